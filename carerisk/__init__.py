"""carerisk: the command-line shell that assembles the stage packages.

The stage packages (`features`, `models`, `training`, `evaluation`, `serving`, `synthetic`)
hold the work; this package only reads settings once and wires the `carerisk` command.
"""

__version__ = "0.1.0"
