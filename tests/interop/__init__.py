"""Interoperability with independent implementations: websockets, Node's ws,
headless Chromium. Run ``tests/interop/install.sh`` once to get the peers."""
