"""The ``sirenvae`` command line: parses, calls the library, prints. No maths here.

Every bad input ends with one line ``error: ...`` on standard error and exit code 2; a training run
that stops on a non-finite loss exits with code 1, keeps its last good checkpoint (to ``--resume``
with new optimiser settings) and saves its best epoch as a model marked ``diverged``.

:mod:`~sirenvae.cli.common` holds the typer app and what the commands share; importing
:mod:`~sirenvae.cli.run` (fit, evaluate, sample, posterior), :mod:`~sirenvae.cli.impute`
(impute), :mod:`~sirenvae.cli.causal` (effect, counterfactual), :mod:`~sirenvae.cli.compare`
(compare) and then :mod:`~sirenvae.cli.experiments` (networks, demo, reproduce) registers their
commands on it, in the order ``sirenvae --help`` lists.
"""

from sirenvae.cli.common import app

# the import order is the commands' order in --help
# isort: off
from sirenvae.cli import run  # noqa: F401
from sirenvae.cli import impute  # noqa: F401
from sirenvae.cli import causal  # noqa: F401
from sirenvae.cli import compare  # noqa: F401
from sirenvae.cli import experiments  # noqa: F401
from sirenvae.cli import graph  # noqa: F401

# isort: on

__all__ = ["app"]
