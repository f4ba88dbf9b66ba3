"""ssmdiag: can AWS Systems Manager Session Manager reach this node, and if not, why?

`__version__` is the project's single version source: pyproject, the packages
and `ssmdiag version` all read it.
"""

__version__ = "0.1.0"
