"""Render folded stacks: interactive SVG flame graphs, differential graphs, other formats.

Pure: functions take a profile and options and return text or write to a stream they are given.
"""
