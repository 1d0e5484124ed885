"""One module per ``flamed`` command; each defines NAME, HELP, add_arguments and run.

Listed here in the order ``flamed --help`` shows them. A command module imports
only the standard library and light flamed modules at top level.
"""

COMMANDS = [
    "collapse",
    "diff_folded",
    "flamegraph",
    "record",
    "run",
    "check_config",
    "export",
]
