/*
 * trio_ws._speedups: optional C accelerator for WebSocket masking.
 *
 * RFC 6455 §5.3: every byte of a client-to-server payload is XOR-ed with the
 * 4-byte masking key, repeated. This is the only per-byte work in the sans-IO
 * core, so it is the only thing written in C. trio_ws.protocol.frames mirrors
 * it in pure Python (_py_apply_mask) and falls back to that when this module
 * is not built or TRIO_WS_NO_SPEEDUPS is set; tests/test_speedups.py checks
 * that both agree byte for byte. MessageBuffer writes (unmasked) pieces of a
 * received message straight into its final bytes object; without it the
 * state machine keeps the pieces and joins them, as it must in Python.
 *
 * The module keeps no state (MessageBuffer is a heap type, one per module
 * object), so it supports subinterpreters with their own GIL and
 * free-threaded builds.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Above this size we release the GIL while XOR-ing. Below it the work takes
 * a few microseconds at most, less than another thread would gain. */
#define RELEASE_GIL_THRESHOLD (64 * 1024)

/* XOR len bytes of src with the 4-byte mask into dst. dst is either src
 * itself (masking in place) or a buffer that does not overlap it. Works on 16 then 8 bytes at a time with the mask repeated in a 64-bit
 * word, then byte by byte for the tail. All wide loads and stores go through
 * memcpy: that is portable and free of alignment and strict-aliasing UB, and
 * compilers turn it into single (unaligned) moves; gcc -O2/-O3 also
 * vectorises the main loop. */
static void
xor_mask(const unsigned char *src, unsigned char *dst, Py_ssize_t len,
         const unsigned char mask[4])
{
    unsigned char pattern[8];
    uint64_t word_mask, a, b;
    Py_ssize_t i = 0;

    /* The mask twice, in memory order: loading it through memcpy yields the
     * right word whatever the byte order of the machine. */
    memcpy(pattern, mask, 4);
    memcpy(pattern + 4, mask, 4);
    memcpy(&word_mask, pattern, 8);

    for (; len - i >= 16; i += 16) {
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        a ^= word_mask;
        b ^= word_mask;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
    }
    if (len - i >= 8) {
        memcpy(&a, src + i, 8);
        a ^= word_mask;
        memcpy(dst + i, &a, 8);
        i += 8;
    }
    /* i is a multiple of 8 here, so the mask phase is i & 3 as at the start. */
    for (; i < len; i++) {
        dst[i] = src[i] ^ mask[i & 3];
    }
}

/* Copy a 4-byte mask out of any bytes-like object. */
static int
get_mask(PyObject *obj, unsigned char mask[4])
{
    Py_buffer view;

    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view.len != 4) {
        PyErr_Format(PyExc_ValueError,
                     "mask must be exactly 4 bytes, not %zd", view.len);
        PyBuffer_Release(&view);
        return -1;
    }
    memcpy(mask, view.buf, 4);
    PyBuffer_Release(&view);
    return 0;
}

/* Return prefix (prefix_len bytes) followed by data XOR-ed with mask, as one
 * new bytes object: a frame's header and its masked payload are built in
 * their final place, with no copy to join them afterwards. */
static PyObject *
masked_after(const char *prefix, Py_ssize_t prefix_len, PyObject *data_obj,
             const unsigned char mask[4])
{
    Py_buffer data;
    PyObject *result;
    const unsigned char *src;
    unsigned char *dst;

    /* PyBUF_FULL_RO accepts strided exporters too (memoryview(b)[::2]), as
     * the pure-Python fallback does. */
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_FULL_RO) < 0) {
        return NULL;
    }
    if (data.len > PY_SSIZE_T_MAX - prefix_len) {
        PyErr_NoMemory();
        PyBuffer_Release(&data);
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, prefix_len + data.len);
    if (result == NULL) {
        goto done;
    }
    if (prefix_len) {  /* never memcpy from NULL, even 0 bytes */
        memcpy(PyBytes_AS_STRING(result), prefix, prefix_len);
    }
    dst = (unsigned char *)PyBytes_AS_STRING(result) + prefix_len;
    if (PyBuffer_IsContiguous(&data, 'C')) {
        src = (const unsigned char *)data.buf;
    }
    else {
        /* Gather the strided data into the result first, then mask in place. */
        if (PyBuffer_ToContiguous(dst, &data, data.len, 'C') < 0) {
            Py_CLEAR(result);
            goto done;
        }
        src = dst;
    }

    if (data.len > RELEASE_GIL_THRESHOLD) {
        /* Safe without the GIL: the exported buffer cannot be resized or
         * freed until we release it, and nobody else can see `result` yet. */
        Py_BEGIN_ALLOW_THREADS
        xor_mask(src, dst, data.len, mask);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(src, dst, data.len, mask);
    }

done:
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask, /)\n"
"--\n"
"\n"
"Return ``data`` XOR-ed with the 4-byte ``mask`` repeated, as bytes.\n"
"\n"
"``data`` may be any bytes-like object (bytes, bytearray, memoryview...),\n"
"``mask`` any 4-byte one. Masking and unmasking are the same operation\n"
"(RFC 6455 section 5.3).\n"
"\n"
"Raises ValueError if ``mask`` is not exactly 4 bytes long.");

static PyObject *
apply_mask(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    unsigned char mask[4];

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (get_mask(args[1], mask) < 0) {
        return NULL;
    }
    return masked_after(NULL, 0, args[0], mask);
}

PyDoc_STRVAR(mask_frame_doc,
"mask_frame(header, data, mask, /)\n"
"--\n"
"\n"
"Return ``header`` followed by ``data`` XOR-ed with the 4-byte ``mask``\n"
"repeated, as one bytes object: ``header + apply_mask(data, mask)`` with\n"
"one copy of the payload instead of two.\n"
"\n"
"Raises ValueError if ``mask`` is not exactly 4 bytes long.");

static PyObject *
mask_frame(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    unsigned char mask[4];
    Py_buffer header;
    PyObject *result;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "mask_frame() takes exactly 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (get_mask(args[2], mask) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &header, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    result = masked_after((const char *)header.buf, header.len, args[1], mask);
    PyBuffer_Release(&header);
    return result;
}

/* -- MessageBuffer ----------------------------------------------------------
 *
 * A received message of known size assembled in its final bytes object: each
 * piece of payload is copied (unmasked) straight to its place, with no piece
 * kept and no join at the end. The bytes object is private until take()
 * hands it out, and take() does so only once it is entirely written, so its
 * uninitialised memory can never be seen. */

/* A buffer's fields change under its lock on free-threaded builds (a
 * critical section, Python 3.13+), under the GIL otherwise. */
#ifdef Py_BEGIN_CRITICAL_SECTION
#define LOCK(obj) Py_BEGIN_CRITICAL_SECTION(obj)
#define UNLOCK() Py_END_CRITICAL_SECTION()
#else
#define LOCK(obj) {
#define UNLOCK() }
#endif

typedef struct {
    PyObject_HEAD
    PyObject *bytes;  /* NULL once taken */
    Py_ssize_t size;
    Py_ssize_t pos;   /* bytes written so far, from the start */
} MessageBuffer;

static PyObject *
MessageBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t size;
    MessageBuffer *self;

    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "MessageBuffer() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "n:MessageBuffer", &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    self = (MessageBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->bytes = PyBytes_FromStringAndSize(NULL, size);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->size = size;
    self->pos = 0;
    return (PyObject *)self;
}

static void
MessageBuffer_dealloc(MessageBuffer *self)
{
    PyTypeObject *type = Py_TYPE(self);

    Py_CLEAR(self->bytes);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);  /* instances of heap types own a reference to it */
}

PyDoc_STRVAR(MessageBuffer_append_doc,
"append(data, mask, /)\n"
"--\n"
"\n"
"Write ``data`` after what was written so far, XOR-ed with the 4-byte\n"
"``mask`` repeated from its first byte, or as is if ``mask`` is None.\n"
"\n"
"Raises ValueError if it does not fit, or if the buffer was taken.");

static PyObject *
MessageBuffer_append(MessageBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned char mask[4];
    int masked;
    Py_buffer data;
    PyObject *target;
    unsigned char *dst;
    Py_ssize_t pos;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "append() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    masked = args[1] != Py_None;
    if (masked && get_mask(args[1], mask) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    /* Claim the place to write under the lock; write without it, with a
     * reference of our own to the bytes object, which stays alive whatever
     * another thread does with this buffer meanwhile. */
    target = NULL;
    LOCK(self);
    pos = self->pos;
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_ValueError, "the message was taken");
    }
    else if (data.len > self->size - pos) {
        PyErr_Format(PyExc_ValueError, "%zd bytes do not fit in the %zd left",
                     data.len, self->size - pos);
    }
    else {
        target = Py_NewRef(self->bytes);
        self->pos = pos + data.len;
    }
    UNLOCK();
    if (target == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    dst = (unsigned char *)PyBytes_AS_STRING(target) + pos;
    if (data.len > RELEASE_GIL_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        if (masked) {
            xor_mask((const unsigned char *)data.buf, dst, data.len, mask);
        }
        else {
            memcpy(dst, data.buf, data.len);
        }
        Py_END_ALLOW_THREADS
    }
    else if (masked) {
        xor_mask((const unsigned char *)data.buf, dst, data.len, mask);
    }
    else if (data.len) {
        memcpy(dst, data.buf, data.len);
    }
    Py_DECREF(target);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(MessageBuffer_take_doc,
"take()\n"
"--\n"
"\n"
"Return the message, as bytes, once all of it was written; the buffer is\n"
"empty afterwards.\n"
"\n"
"Raises ValueError if part of it is missing, or if it was taken.");

static PyObject *
MessageBuffer_take(MessageBuffer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = NULL;

    LOCK(self);
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_ValueError, "the message was taken");
    }
    else if (self->pos != self->size) {
        PyErr_Format(PyExc_ValueError, "%zd of %zd bytes written",
                     self->pos, self->size);
    }
    else {
        result = self->bytes;
        self->bytes = NULL;
    }
    UNLOCK();
    return result;
}

static PyObject *
MessageBuffer_get_missing(MessageBuffer *self, void *Py_UNUSED(closure))
{
    Py_ssize_t missing;

    LOCK(self);
    missing = self->bytes == NULL ? 0 : self->size - self->pos;
    UNLOCK();
    return PyLong_FromSsize_t(missing);
}

static PyMethodDef MessageBuffer_methods[] = {
    {"append", (PyCFunction)(void (*)(void))MessageBuffer_append, METH_FASTCALL,
     MessageBuffer_append_doc},
    {"take", (PyCFunction)MessageBuffer_take, METH_NOARGS, MessageBuffer_take_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef MessageBuffer_getset[] = {
    {"missing", (getter)MessageBuffer_get_missing, NULL,
     "Bytes still to be written (0 once taken).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(MessageBuffer_doc,
"MessageBuffer(size, /)\n"
"--\n"
"\n"
"A message of ``size`` bytes written piece by piece, in order, into the\n"
"bytes object that take() returns: no copy to join the pieces.");

static PyType_Slot MessageBuffer_slots[] = {
    {Py_tp_new, MessageBuffer_new},
    {Py_tp_dealloc, MessageBuffer_dealloc},
    {Py_tp_methods, MessageBuffer_methods},
    {Py_tp_getset, MessageBuffer_getset},
    {Py_tp_doc, (void *)MessageBuffer_doc},
    {0, NULL},
};

/* Holds no Python object that can refer back to it (bytes cannot), so it
 * needs no cycle-collector support. */
static PyType_Spec MessageBuffer_spec = {
    .name = "trio_ws._speedups.MessageBuffer",
    .basicsize = sizeof(MessageBuffer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = MessageBuffer_slots,
};

static int
speedups_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &MessageBuffer_spec, NULL);

    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "MessageBuffer", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    Py_DECREF(type);
    return 0;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     apply_mask_doc},
    {"mask_frame", (PyCFunction)(void (*)(void))mask_frame, METH_FASTCALL,
     mask_frame_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"Optional C accelerator for trio_ws (WebSocket masking, message assembly).\n"
"\n"
"Use trio_ws.protocol.frames.apply_mask, which picks this module when it is\n"
"available and falls back to pure Python otherwise.");

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "trio_ws._speedups",
    .m_doc = module_doc,
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
