"""The flamed daemon and command line: config, window store, HTTP, metrics, signals.

Importing this package must stay light: the command line imports it for every
command, including ``flamed collapse``, whose start-up time is benchmarked.
"""
