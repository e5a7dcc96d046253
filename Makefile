# procreg: `make` builds, `make test` runs every test, `make run` starts the
# daemon.  `make deps` (run by `make test` and `make run`, never by plain
# `make`) installs the Debian packages when pkg-config cannot find them.
# SANITIZE=1 builds with ASan and UBSan.
#
# One folder per program (README, "Layout"): src/daemon (procregd),
# src/lib (libprocreg), src/ctl (procregctl), src/common (code the three
# share), src/examples.  Objects are built beside their sources; each
# folder sees its own private headers, src/common's and include/.

CC	?= cc
PKGS	 = libevent libevent_openssl openssl msgpack libsodium jansson \
	   inih libsystemd
DEBS	 = build-essential pkg-config libevent-dev libmsgpack-dev \
	   libsodium-dev libjansson-dev libinih-dev \
	   libsystemd-dev libssl-dev systemd check python3 \
	   python3-msgpack python3-prometheus-client valgrind mandoc etcd-server

VERSION	 = 0.1.0
OPT	?= -O2
WARN	 = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	   -Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wvla
CFLAGS	?= $(OPT) -g
# -fPIC for the shared library; hidden visibility so that it exports only
# what include/procreg.h marks PROCREG_API.
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -fPIC \
	   -fvisibility=hidden -Iinclude -Isrc/common $(DIR_INC) -MMD -MP \
	   $(SAN) $(shell pkg-config --cflags $(PKGS))
LIBS	 = $(shell pkg-config --libs libevent libevent_openssl openssl \
	   msgpack libsodium jansson inih libsystemd)
CLIENT_LIBS = $(shell pkg-config --libs msgpack)
JSON_LIBS = $(shell pkg-config --libs jansson)
CHECK_LIBS = $(shell pkg-config --libs check)
ifeq ($(SANITIZE),1)
SAN	 = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	   -fno-omit-frame-pointer
endif

# Code the daemon, the library and the tool share.
COMMON	 = $(patsubst %.c,%.o,$(wildcard src/common/*.c))
# Everything of the daemon but main.c goes into one internal library that
# the daemon and every daemon-side test link; the cluster code (the etcd
# client) too.
CLUSTER	 = $(patsubst %.c,%.o,$(wildcard src/cluster/*.c))
CORE	 = $(filter-out src/daemon/main.o,\
	   $(patsubst %.c,%.o,$(wildcard src/daemon/*.c))) $(CLUSTER) $(COMMON)
LIBCORE	 = src/daemon/libprocregd.a
# Unit suites run first; tests/check_client links libprocreg instead.
CHECKS	 = $(patsubst %.c,%,$(wildcard tests/check_*.c))
UNIT	 = $(filter $(addprefix tests/check_,registry proto policy calls \
	   subs alloc),$(CHECKS))
FAULTS	 = tests/check_faults
INTEG	 = $(filter-out $(UNIT) $(FAULTS),$(CHECKS))
PYTESTS	 = tests/test_python.py tests/test_cli.py tests/test_chat.py \
	   tests/test_install.py tests/test_service.py tests/test_units.py \
	   tests/test_safety.py tests/test_metrics.py tests/test_pyclient.py \
	   tests/test_cluster.py tests/test_cluster_tls.py
# Under valgrind, the suites whose daemon paths the others do not cover;
# the client-side (pyclient, check_client), packaging (install, units),
# service (185 s under valgrind, mostly waiting), load (safety, 86 s) and
# cluster suites run plain and under AddressSanitizer only, to keep CI
# within its time.
VG_PYTESTS = tests/test_python.py tests/test_cli.py tests/test_chat.py \
	   tests/test_metrics.py
VG_INTEG = $(filter-out tests/check_client,$(INTEG))
# The packaging suites test nothing a sanitizer sees.
ifeq ($(SANITIZE),1)
RUN_PYTESTS = $(filter-out tests/test_install.py tests/test_units.py,\
	   $(PYTESTS))
else
RUN_PYTESTS = $(PYTESTS)
endif
TESTLIB	 = tests/testlib.o
# libprocreg: the client library, shared and static.
LIBOBJS	 = $(patsubst %.c,%.o,$(wildcard src/lib/*.c)) $(COMMON)
CTLOBJS	 = $(patsubst %.c,%.o,$(wildcard src/ctl/*.c))
SOVER	 = 1
SOLIB	 = src/lib/libprocreg.so.$(SOVER)
CLIENT	 = src/lib/libprocreg.a $(SOLIB) src/lib/libprocreg.so \
	   src/lib/procreg-uninstalled.pc
PREFIX	?= /usr/local
LIBDIR	?= $(PREFIX)/lib
SYSCONFDIR ?= /etc
UNITDIR	?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
MANDIR	?= $(PREFIX)/share/man
DOCDIR	?= $(PREFIX)/share/doc/procreg
# Where Debian's python3 finds packages under PREFIX: /usr's is
# lib/python3/dist-packages, any other prefix's lib/python3.X/dist-packages.
PYDIR	?= $(shell /usr/bin/python3 -c 'import sys; p = "$(PREFIX)"; \
	   print(p + "/lib/python3/dist-packages" if p == "/usr" else \
	   "%s/lib/python%d.%d/dist-packages" % ((p,) + sys.version_info[:2]))')
PYFILES	 = $(wildcard src/python/procreg/*.py)
MANPAGES = conf/man/procregctl.1 conf/man/libprocreg.3 conf/man/procreg.conf.5 \
	   conf/man/procreg.7 conf/man/procregd.8
STAMP	 = src/.build-flags

.PHONY: all build have-deps deps test test-valgrind fuzz bench bench-cluster run install uninstall clean FORCE
.SECONDARY:

BINS	 = procregd procregctl src/examples/chat procreg-bench \
	   tests/bench/echo-floor tests/bench/etcd-rtt

# Plain `make` installs nothing: it says what is missing and how to get it.
all: have-deps
	@$(MAKE) --no-print-directory build

# Everything a user runs; quiet when it is all up to date.
build: $(BINS) $(CLIENT)
	@:

have-deps:
	@pkg-config --exists $(PKGS) 2>/dev/null || { \
		echo 'missing build dependencies: run `make deps` (installs' \
		    'Debian packages) or install: $(DEBS)' >&2; exit 1; }

deps:
	@if ! pkg-config --exists $(PKGS) check 2>/dev/null || \
	    ! /usr/bin/python3 -c 'import msgpack, prometheus_client' \
	    2>/dev/null || \
	    ! command -v valgrind >/dev/null || \
	    ! command -v systemd-socket-activate >/dev/null || \
	    ! command -v mandoc >/dev/null || \
	    ! command -v etcd >/dev/null; then \
		sh tests/install-debs.sh $(DEBS); \
	fi

# Rebuild everything when the flags change (e.g. SANITIZE=1 and back);
# the per-folder include path is not a flag that changes.
STAMP_FLAGS = $(filter-out $(DIR_INC),$(ALL_CFLAGS))
$(STAMP): FORCE
	@echo '$(CC) $(STAMP_FLAGS)' | cmp -s - $@ || \
	    echo '$(CC) $(STAMP_FLAGS)' > $@

%.o: %.c $(STAMP)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Each folder's private headers are visible to it alone (and to the tests
# of that folder's code).
src/daemon/%.o: DIR_INC = -Isrc/daemon -Isrc/cluster
src/lib/%.o: DIR_INC = -Isrc/lib
src/ctl/%.o: DIR_INC = -Isrc/ctl
src/cluster/%.o: DIR_INC = -Isrc/cluster
tests/%.o: DIR_INC = -Isrc/daemon -Isrc/cluster -Isrc/lib -Itests

$(LIBCORE): $(CORE)
	rm -f $@
	ar rcs $@ $^

procregd: src/daemon/main.o $(LIBCORE)
	$(CC) $(SAN) -o $@ $^ $(LIBS)

# The static library is one relocatable object whose non-API symbols are
# made local, so it exports exactly what the shared one does.
src/lib/libprocreg.a: $(LIBOBJS)
	ld -r -o src/lib/libprocreg-all.o $^
	objcopy --localize-hidden src/lib/libprocreg-all.o
	rm -f $@
	ar rcs $@ src/lib/libprocreg-all.o

$(SOLIB): $(LIBOBJS)
	$(CC) $(SAN) -shared -Wl,-soname,libprocreg.so.$(SOVER) -o $@ $^ \
	    $(CLIENT_LIBS)

src/lib/libprocreg.so: $(SOLIB)
	ln -sf libprocreg.so.$(SOVER) $@

# pkg-config prefers NAME-uninstalled.pc: PKG_CONFIG_PATH=src/lib builds
# against the build tree, and the program runs from it (an rpath: the
# build tree's libprocreg.so is not where the loader looks).
src/lib/procreg-uninstalled.pc: Makefile
	printf '%s\n' 'Name: procreg' \
	    'Description: client library of the procreg process registry' \
	    'Version: $(VERSION)' 'Requires.private: msgpack' \
	    'Libs: -L$(CURDIR)/src/lib -Wl,-rpath,$(CURDIR)/src/lib -lprocreg' \
	    'Cflags: -I$(CURDIR)/include' \
	    > $@

# src/common's own objects: the library's copies are hidden in it.
procregctl: $(CTLOBJS) $(COMMON) src/lib/libprocreg.a
	$(CC) $(SAN) -o $@ $^ $(CLIENT_LIBS) $(JSON_LIBS)

src/examples/chat: src/examples/chat.o src/lib/libprocreg.a
	$(CC) $(SAN) -o $@ $^ $(CLIENT_LIBS)

# The benchmark client (procreg and, for comparison, Redis) and the bare
# libevent echo server that is the floor.
procreg-bench: tests/bench/procreg-bench.o
	$(CC) $(SAN) -o $@ $^ $(CLIENT_LIBS) -lm

tests/bench/echo-floor: tests/bench/echo-floor.o
	$(CC) $(SAN) -o $@ $^ $(LIBS)

# The round trip of a bare etcd transaction through the daemon's own etcd
# client, the floor under a cluster register (tests/bench/cluster.py).
tests/bench/etcd-rtt: tests/bench/etcd-rtt.o $(CLUSTER) $(COMMON)
	$(CC) $(SAN) -o $@ $^ $(LIBS) -lm

bench: all
	@command -v redis-server >/dev/null || \
	    sh tests/install-debs.sh redis-server
	sh tests/bench/compare.sh

# Cluster mode's figures (a real etcd and three nodes; ~40 minutes).
bench-cluster: all
	/usr/bin/python3 tests/bench/cluster.py

tests/check_client: tests/check_client.o $(TESTLIB) src/lib/libprocreg.a
	$(CC) $(SAN) -o $@ $^ $(CLIENT_LIBS) $(CHECK_LIBS)

tests/check_%: tests/check_%.o $(TESTLIB) $(LIBCORE)
	$(CC) $(SAN) -o $@ $^ $(LIBS) $(CHECK_LIBS)

# The unit suites link a copy of the daemon's library whose allocations go
# through the shim of tests/allocfail.h, so that they can fail the Nth
# (renamed in the copy alone: ld --wrap would catch static Check's too).
LIBCORE_AF = tests/libprocregd-allocfail.a
$(LIBCORE_AF): $(LIBCORE)
	objcopy --redefine-sym malloc=__wrap_malloc \
	    --redefine-sym calloc=__wrap_calloc \
	    --redefine-sym realloc=__wrap_realloc \
	    --redefine-sym free=__wrap_free $< $@

$(UNIT): tests/check_%: tests/check_%.o $(TESTLIB) tests/allocfail.o \
	    $(LIBCORE_AF)
	$(CC) $(SAN) -o $@ $^ $(LIBS) $(CHECK_LIBS)

test: deps
	@$(MAKE) --no-print-directory $(BINS) $(CLIENT) $(UNIT) $(INTEG) \
	    $(FAULTS)
	@PROCREGD=$(CURDIR)/procregd PROCREGCTL=$(CURDIR)/procregctl \
	    CHAT=$(CURDIR)/src/examples/chat SPEC=$(CURDIR)/proto/PROTOCOL.md \
	    PROCREG_SANITIZED=$(SANITIZE) \
	    sh tests/run.sh $(UNIT) $(INTEG) $(RUN_PYTESTS) $(FAULTS)

# The integration suites again, with the daemon under valgrind.
test-valgrind: deps
	@$(MAKE) --no-print-directory $(BINS) $(CLIENT) $(INTEG)
	@PROCREGD=$(CURDIR)/tests/valgrind-procregd.sh \
	    PROCREGCTL=$(CURDIR)/procregctl CHAT=$(CURDIR)/src/examples/chat \
	    SPEC=$(CURDIR)/proto/PROTOCOL.md sh tests/run.sh $(VG_INTEG) \
	    $(VG_PYTESTS)

# libFuzzer over the daemon's input path (clang; sources compiled
# straight into the target so the tree's objects keep their own flags).
FUZZ_SECONDS ?= 60
FUZZ	 = tests/fuzz/fuzz_procregd
$(FUZZ): tests/fuzz/fuzz_procregd.c $(CORE:.o=.c) \
	    $(wildcard src/daemon/*.h src/cluster/*.h src/common/*.h)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror \
	    -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -Iinclude -Isrc/common \
	    -Isrc/daemon -Isrc/cluster -o $@ \
	    tests/fuzz/fuzz_procregd.c $(CORE:.o=.c) $(LIBS)

# The library's side: its decoder of the daemon's replies and
# notifications, fed by a fake daemon (a quarter of the time).
FUZZ_LIB = tests/fuzz/fuzz_libreply
$(FUZZ_LIB): tests/fuzz/fuzz_libreply.c $(LIBOBJS:.o=.c) \
	    $(wildcard src/lib/*.h src/common/*.h)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror \
	    -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -Iinclude -Isrc/common \
	    -Isrc/lib -o $@ \
	    tests/fuzz/fuzz_libreply.c $(LIBOBJS:.o=.c) $(CLIENT_LIBS)

fuzz: deps
	@command -v clang >/dev/null && \
	    dpkg -s libclang-rt-dev >/dev/null 2>&1 || \
	    sh tests/install-debs.sh clang libclang-rt-dev
	@$(MAKE) --no-print-directory $(FUZZ) $(FUZZ_LIB)
	mkdir -p tests/fuzz/work tests/fuzz/work_lib
	$(FUZZ) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	    -print_final_stats=1 tests/fuzz/work tests/fuzz/corpus
	$(FUZZ_LIB) -max_total_time=$$(( $(FUZZ_SECONDS) / 4 + 1 )) \
	    -max_len=4096 -timeout=10 -print_final_stats=1 \
	    tests/fuzz/work_lib tests/fuzz/corpus_lib

# Installs what is missing (as make test does), builds, and starts the
# daemon in the foreground with a word on how to reach it.
run: deps
	@$(MAKE) --no-print-directory build
	@echo "procregd starts in the foreground (Ctrl-C stops it) on the socket"
	@echo "it names below. In another terminal, from this directory:"
	@echo "    ./procregctl ping; ./procregctl hold demo -- sleep 60 &"
	@echo "    ./procregctl list; ./procregctl --help"
	./procregd -v $(ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 procregd $(DESTDIR)$(PREFIX)/sbin/procregd
	install -m 755 procregctl $(DESTDIR)$(PREFIX)/bin/procregctl
	install -m 644 src/lib/libprocreg.a $(DESTDIR)$(LIBDIR)/libprocreg.a
	install -m 755 $(SOLIB) $(DESTDIR)$(LIBDIR)/libprocreg.so.$(SOVER)
	ln -sf libprocreg.so.$(SOVER) $(DESTDIR)$(LIBDIR)/libprocreg.so
	install -m 644 include/procreg.h include/procreg-protocol.h \
	    $(DESTDIR)$(PREFIX)/include/
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/procreg
	for u in procreg.socket procreg.service; do \
		sed 's|/usr/sbin/procregd|$(PREFIX)/sbin/procregd|g' \
		    systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
		sed 's|/usr/sbin/procregd|$(PREFIX)/sbin/procregd|g' \
		    systemd/user/$$u > $(DESTDIR)$(USERUNITDIR)/$$u || exit 1; \
	done
	chmod 644 $(DESTDIR)$(UNITDIR)/procreg.* $(DESTDIR)$(USERUNITDIR)/procreg.*
	# An administrator's configuration is never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/procreg/procreg.conf ] || \
	    install -m 644 conf/procreg.conf \
	    $(DESTDIR)$(SYSCONFDIR)/procreg/procreg.conf
	for m in $(MANPAGES); do \
		sec=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$sec && \
		install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$sec/ || exit 1; \
	done
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	    $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	install -m 644 conf/completion/procregctl.bash \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions/procregctl
	install -m 644 conf/completion/_procregctl \
	    $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_procregctl
	install -d $(DESTDIR)$(PYDIR)/procreg
	install -m 644 $(PYFILES) $(DESTDIR)$(PYDIR)/procreg/
	# procreg(7) names the protocol's normative text.
	install -d $(DESTDIR)$(DOCDIR)
	install -m 644 proto/PROTOCOL.md $(DESTDIR)$(DOCDIR)/PROTOCOL.md
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' \
	    'includedir=$${prefix}/include' '' 'Name: procreg' \
	    'Description: client library of the procreg process registry' \
	    'Version: $(VERSION)' 'Requires.private: msgpack' \
	    'Libs: -L$${libdir} -lprocreg' 'Cflags: -I$${includedir}' \
	    > $(DESTDIR)$(LIBDIR)/pkgconfig/procreg.pc
	-[ -z "$(DESTDIR)" ] && ldconfig 2>/dev/null; true

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/procregd \
	    $(DESTDIR)$(PREFIX)/bin/procregctl \
	    $(DESTDIR)$(LIBDIR)/libprocreg.a \
	    $(DESTDIR)$(LIBDIR)/libprocreg.so.$(SOVER) \
	    $(DESTDIR)$(LIBDIR)/libprocreg.so \
	    $(DESTDIR)$(PREFIX)/include/procreg.h \
	    $(DESTDIR)$(PREFIX)/include/procreg-protocol.h \
	    $(DESTDIR)$(LIBDIR)/pkgconfig/procreg.pc \
	    $(DESTDIR)$(UNITDIR)/procreg.socket \
	    $(DESTDIR)$(UNITDIR)/procreg.service \
	    $(DESTDIR)$(USERUNITDIR)/procreg.socket \
	    $(DESTDIR)$(USERUNITDIR)/procreg.service \
	    $(addprefix $(DESTDIR)$(MANDIR)/man1/,procregctl.1) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man3/,libprocreg.3) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man5/,procreg.conf.5) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man7/,procreg.7) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man8/,procregd.8) \
	    $(DESTDIR)$(DOCDIR)/PROTOCOL.md \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions/procregctl \
	    $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_procregctl
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null
	rm -rf $(DESTDIR)$(PYDIR)/procreg
	# The configuration goes only if nobody changed it.
	-cmp -s conf/procreg.conf $(DESTDIR)$(SYSCONFDIR)/procreg/procreg.conf && \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/procreg/procreg.conf

clean:
	rm -f $(BINS) src/*/*.o src/*/*.d src/*/*.a src/*/*.so \
	    src/*/*.so.* src/*/*.pc tests/bench/*.o tests/bench/*.d \
	    tests/*.o tests/*.d tests/*.a $(CHECKS) $(STAMP) $(FUZZ) $(FUZZ_LIB)

-include $(wildcard src/*/*.d tests/*.d tests/bench/*.d)
