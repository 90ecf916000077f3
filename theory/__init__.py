"""Symbolic derivations (sympy) and their numeric evaluation.

Imports only sympy, numpy and scipy (and :mod:`diffcrit.data`, which is numpy only).
"""
