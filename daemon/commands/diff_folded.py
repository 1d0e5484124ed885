"""``flamed diff-folded [-n] [-s] FILE1 FILE2``: two folded profiles side by side."""

from __future__ import annotations

import argparse

from flamed.collapse.folded import FoldedCollapser, format_pairs, paired, strip_hex
from flamed.daemon.commands.common import collapse_file, write_stdout
from flamed.daemon.commands.declaration import Declaration

NAME = "diff-folded"
HELP = "pair the counts of two folded files, for a differential flame graph (difffolded.pl)"
DESCRIPTION = """\
Print every stack of either folded file with its count in each: `stack COUNT1
COUNT2`, 0 where a file lacks the stack, sorted bytewise. Pipe it into
`flamed flamegraph` for a differential flame graph (widths from FILE2, colours
from the change). Fractional counts are kept, printed with 15 significant digits
as Perl prints them. Same output as difffolded.pl.
"""


def add_arguments(parser: Declaration) -> None:
    add = parser.add_argument
    add(
        "-n",
        "--normalize",
        action="store_true",
        help="scale FILE1's counts to FILE2's total (truncated to integers, as difffolded.pl)",
    )
    add(
        "-s",
        "--strip-hex",
        action="store_true",
        help="replace hex addresses (0x...) before matching stacks",
    )
    add("file1", metavar="FILE1", help="the folded profile before (- for stdin)")
    add("file2", metavar="FILE2", help="the folded profile after (- for stdin)")


def run(args: argparse.Namespace) -> int:
    first, second = FoldedCollapser(), FoldedCollapser()
    second.warn = first.warn  # a bad line is warned once, whichever file holds it
    before = collapse_file(first, args.file1)
    after = collapse_file(second, args.file2)
    if args.strip_hex:
        before, after = strip_hex(before), strip_hex(after)
    write_stdout(format_pairs(paired(before, after, normalize=args.normalize)))
    return 0
