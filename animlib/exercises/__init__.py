"""Self-checks for the book's exercises, one module per chapter (``animlib.exercises.ch01`` ...).

Each checker takes the learner's function or value, prints a short verdict with a hint, and returns
True/False; an unsolved exercise (a function returning None) prints a hint instead of raising, so
chapters execute cleanly as shipped. The checkers are unit-tested against worked solutions.
"""
