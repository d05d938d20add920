# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Every source setup.py compiles is in the checksum: an edited module is rebuilt, never
# shadowed by a stale extension (the compiled .so wins over the .py next to it).
COMPILED := sockscope/*.pyx sockscope/*/*.pyx sockscope/*/*.pxd sockscope/http/session.py sockscope/http/_grammar.py \
	sockscope/http/sniff.py sockscope/engine.py
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py $(COMPILED) 2>/dev/null | cksum | cut -d' ' -f1)
DEMO_CAPTURE ?= captures/crafted/incident-before-fix.pcap

.PHONY: demo test install system-deps bench captures fuzz fuzz-mutants soak clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "cython>=3.0" "setuptools>=68" wheel "numpy>=1.26"
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Debian packages the suite uses (tshark for the cross-check engine, tcpdump for the lab,
# chromium for the HTML report's browser tests, driven by Playwright pointed at it).
# Installed only when running as root and missing; otherwise the tests that need them skip.
system-deps:
	@if [ "$$(id -u)" = 0 ] && { ! command -v tshark >/dev/null || ! command -v tcpdump >/dev/null \
			|| ! command -v chromium >/dev/null; }; then \
		echo "installing tshark, tcpdump and chromium with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark tcpdump chromium >/dev/null; \
	fi

demo: install
	$(VENV)/bin/sockscope summary $(DEMO_CAPTURE)
	@if $(VENV)/bin/sockscope --help | grep -q diagnose; then $(VENV)/bin/sockscope diagnose $(DEMO_CAPTURE); fi

test: system-deps install
	$(PY) -m pytest -q

bench: system-deps install
	$(PY) bench/run.py --tshark-engine --repeat 2

captures: system-deps install
	$(PY) captures/crafted/make_crafted.py
	@if [ -x lab/record_all.sh ]; then bash lab/record_all.sh; fi
	@if [ -x lab/record_rotated.sh ]; then bash lab/record_rotated.sh; fi
	@if [ -x lab/record_paths.sh ]; then bash lab/record_paths.sh; fi

# A million inputs, coverage-guided, in under an hour (bench/fuzzcov.py). clang lets the
# compiled modules report their coverage too; it is installed when running as root.
fuzz: install
	@if [ "$$(id -u)" = 0 ] && ! command -v clang >/dev/null; then \
		echo "installing clang with apt-get (coverage of the compiled modules)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null; \
	fi
	$(PY) bench/fuzzcov.py --inputs 1000000 --seconds 3300

# The earlier mutation run (seeded mutants, two tiers) and the big adversarial captures.
fuzz-mutants: install
	$(PY) bench/fuzz.py --inputs 100000
	$(PY) bench/fuzz.py --adversarial

# `watch` on a never-ending stream for 10 minutes (bench/soak_watch.py): >= 10M packets of a
# looped busy capture, RSS flat within 10 % after warm-up, every finding counted against the truth.
soak: install
	$(PY) bench/soak_watch.py

clean:
	rm -rf build $(VENV) sockscope/*/*.so sockscope/*/*.c
