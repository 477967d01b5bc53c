"""A conformance suite for trio_ws, case by case, graded like Autobahn|Testsuite.

``python -m tests.conformance`` runs it and prints a report; ``pytest
tests/conformance`` runs one test per case and role. docs/conformance.md
describes the categories and the grading.
"""
