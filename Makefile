# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install on first use, so they work on a fresh Debian machine as root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The hot modules setup.py compiles with mypyc (its COMPILED list), and the stamp of their build:
# they are compiled again whenever one of them (or setup.py) changes.
COMPILED := $(shell sed -n 's/^ *"\(src\/c1222\/[^"]*\.py\)",.*/\1/p' setup.py)
BUILT    := $(VENV)/.compiled

.PHONY: demo test system-deps venv bench clean compile uncompile build-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || $(MAKE) --no-print-directory apt-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools>=77'
	$(BIN)/pip install -q -e '.[test,compile]'
	@touch $(STAMP)

# The package is built compiled (mypyc, C extensions beside the .py files: setup.py,
# docs/performance.md); `make uncompile` goes back to pure Python, which is what a plain
# `pip install` without C1222_COMPILE=1 gives.
$(BUILT): $(STAMP) setup.py $(COMPILED)
	@$(MAKE) --no-print-directory build-deps
	cd src && find . -name '*.so' -delete
	C1222_COMPILE=1 $(BIN)/python setup.py -q build_ext --inplace -j 2
# setuptools copies an unchanged module's stub with its old time: every extension is as new
# as this build (c1222.build compares them with their sources)
	find src -name '*.so' -exec touch {} +
	@touch $(BUILT)

venv: $(BUILT)
compile: $(BUILT)

apt-python:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip

# A C compiler and Python's headers for the compiled build; installed only when missing.
build-deps:
	@command -v cc >/dev/null 2>&1 && $(BIN)/python -c "import sysconfig, os, sys; \
	  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" || { \
	  echo "installing gcc and python3-dev (Debian packages; the compiled build needs them)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null; }

# Tools the tests use as independent judges, and the network test bed's ip, tc and iptables
# (tests/network: hosts in network namespaces). Installed only when missing.
system-deps:
	@command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 && \
	  command -v iptables >/dev/null 2>&1 || { \
	  echo "installing iproute2 and iptables (Debian packages; the network test bed uses them)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables >/dev/null; }
	@command -v tshark >/dev/null 2>&1 || { \
	  echo "installing tshark (Debian package)"; \
	  apt-get update -qq && \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null; }
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian packages; the browser tests drive it with Playwright)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
# The display's Home Assistant tests start a private broker from this binary (in /usr/sbin).
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  echo "installing mosquitto (Debian package; the MQTT tests start a private broker)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; }
	@{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  echo "installing postgresql (Debian package; the tests start a private instance when none runs)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v nats-server >/dev/null 2>&1 || { \
	  echo "installing nats-server (Debian package; the tests start it with JetStream when none runs)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; }

test: system-deps $(BUILT)
	$(BIN)/python -m pytest -q

demo: $(BUILT)
	$(BIN)/c1222 demo $(DEMO_ARGS)

bench: system-deps $(BUILT)
	@command -v valgrind >/dev/null 2>&1 || { \
	  echo "installing valgrind (Debian package; benchmarks/responder_instructions.py counts with it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/crypto.py
	$(BIN)/python benchmarks/metrology.py
	$(BIN)/python benchmarks/meter.py
	$(BIN)/python benchmarks/responder_instructions.py
	$(BIN)/python benchmarks/headend.py
	$(BIN)/python benchmarks/network.py

clean:
	find src -name '*.so' -delete
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis

uncompile:
	find src -name '*.so' -delete
	rm -rf build $(BUILT)
