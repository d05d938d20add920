"""Build the compiled kernels (Cython); everything else is declared in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("sockscope.capture._source", ["sockscope/capture/_source.pyx"]),
    Extension("sockscope.tcp._tracker", ["sockscope/tcp/_tracker.pyx"]),
    # JSON output: cell texts joined into row objects (sockscope.output)
    Extension("sockscope._rows", ["sockscope/_rows.pyx"]),
    # The HTTP framer is plain Python (readable, tested as such); compiling the same source
    # removes interpreter overhead from the per-segment path.
    Extension("sockscope.http.session", ["sockscope/http/session.py"]),
    Extension("sockscope.http._grammar", ["sockscope/http/_grammar.py"]),
    Extension("sockscope.http.sniff", ["sockscope/http/sniff.py"]),
    # The engine's per-connection step (exchanges -> columns) runs 27k times per 1M packets.
    Extension("sockscope.engine", ["sockscope/engine.py"]),
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": 3}, quiet=True))
