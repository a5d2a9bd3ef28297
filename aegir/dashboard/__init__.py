"""The observatory page (`python -m aegir.dashboard`): runs × data products × gates in one offline HTML file.

aegir/dashboard/data.py reads run directories into numbers (plain functions, unit-tested), render.py turns them
into the self-contained page, __main__.py is the command line and the live `--serve` mode.
"""
