"""Build the compiled kernels (Cython); everything else is declared in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("sockscope.capture._source", ["sockscope/capture/_source.pyx"]),
    Extension("sockscope.tcp._tracker", ["sockscope/tcp/_tracker.pyx"]),
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": 3}, quiet=True))
