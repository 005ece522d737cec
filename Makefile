# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install on first use, so they work on a fresh Debian machine as root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test system-deps venv bench clean compile uncompile

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || $(MAKE) --no-print-directory apt-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

apt-python:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip

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

test: system-deps $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/c1222 demo $(DEMO_ARGS)

bench: system-deps $(STAMP)
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/crypto.py
	$(BIN)/python benchmarks/metrology.py
	$(BIN)/python benchmarks/meter.py
	$(BIN)/python benchmarks/headend.py
	$(BIN)/python benchmarks/network.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis

# Opt-in: the decode path compiled with mypyc (setup.py, docs/messages.md). Python loads the
# extensions before the .py files beside them: after editing those modules, compile again or
# uncompile.
compile: $(STAMP)
	C1222_COMPILE=1 $(BIN)/pip install -q --no-deps -e .

uncompile:
	find src -name '*.so' -delete
	rm -rf build
