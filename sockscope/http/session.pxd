# Declarations the compiled session module uses (Cython reads this next to session.py);
# the module itself stays plain Python and runs uncompiled too.
from libc.string cimport memchr
