"""Everything that touches Keras. Nothing in this package imports Textual (a test checks),
and nothing imports Keras at module import time: it is imported inside the functions that
need it, so that the app can draw its first frame first.
"""
