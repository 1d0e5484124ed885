"""A CPU-bound CPython program with named hot functions (the Python backend's tests).

``python hot.py SECONDS TAG``: runs for SECONDS at most; TAG only makes the command line
unique, so a test can find its own process by it.
"""

import sys
import time


def leaf_arithmetic(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def middle_layer() -> int:
    return leaf_arithmetic(20_000)


def main() -> None:
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        middle_layer()


if __name__ == "__main__":
    main()
