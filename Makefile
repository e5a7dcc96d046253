# procreg: `make` builds, `make test` runs every test, `make run` starts the
# daemon.  `make deps` (run by all three) installs the Debian packages when
# pkg-config cannot find them.  SANITIZE=1 builds with ASan and UBSan.

CC	?= cc
PKGS	 = libevent msgpack libsodium libbsd
DEBS	 = build-essential pkg-config libevent-dev libmsgpack-dev \
	   libsodium-dev libbsd-dev check python3 python3-msgpack valgrind
SUDO	 = $(if $(filter 0,$(shell id -u)),,sudo)

OPT	?= -O2
WARN	 = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	   -Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wvla
CFLAGS	?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Iinclude -Isrc \
	   -MMD -MP $(SAN) $(shell pkg-config --cflags $(PKGS))
LIBS	 = $(shell pkg-config --libs libevent msgpack libsodium)
CHECK_LIBS = $(shell pkg-config --libs check)
ifeq ($(SANITIZE),1)
SAN	 = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	   -fno-omit-frame-pointer
endif

# Everything but main.c goes into one internal library that the daemon
# and every test link.
CORE	 = src/prototab.o src/util.o src/htab.o src/registry.o src/guard.o \
	   src/proto.o src/log.o src/config.o src/paths.o src/conn.o \
	   src/dispatch.o src/server.o
LIBCORE	 = src/libprocregd.a
UNIT	 = tests/check_registry tests/check_proto
INTEG	 = tests/check_daemon tests/check_spec
TESTLIB	 = tests/testlib.o
STAMP	 = src/.build-flags

.PHONY: all deps test test-valgrind run clean FORCE
.SECONDARY:

all: deps
	@$(MAKE) --no-print-directory procregd

deps:
	@if ! pkg-config --exists $(PKGS) check 2>/dev/null || \
	    ! /usr/bin/python3 -c 'import msgpack' 2>/dev/null || \
	    ! command -v valgrind >/dev/null; then \
		echo "make deps: installing $(DEBS)"; \
		$(SUDO) apt-get install -y -q $(DEBS) || \
		{ $(SUDO) apt-get update -q && \
		  $(SUDO) apt-get install -y -q $(DEBS); }; \
	fi

# Rebuild everything when the flags change (e.g. SANITIZE=1 and back).
$(STAMP): FORCE
	@echo '$(CC) $(ALL_CFLAGS)' | cmp -s - $@ || \
	    echo '$(CC) $(ALL_CFLAGS)' > $@

%.o: %.c $(STAMP)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBCORE): $(CORE)
	rm -f $@
	ar rcs $@ $^

procregd: src/main.o $(LIBCORE)
	$(CC) $(SAN) -o $@ $^ $(LIBS)

tests/check_%: tests/check_%.o $(TESTLIB) $(LIBCORE)
	$(CC) $(SAN) -o $@ $^ $(LIBS) $(CHECK_LIBS)

test: deps
	@$(MAKE) --no-print-directory procregd $(UNIT) $(INTEG)
	@PROCREGD=$(CURDIR)/procregd SPEC=$(CURDIR)/proto/PROTOCOL.md \
	    sh tests/run.sh $(UNIT) $(INTEG)

# The integration suites again, with the daemon under valgrind.
test-valgrind: deps
	@$(MAKE) --no-print-directory procregd $(INTEG)
	@PROCREGD=$(CURDIR)/tests/valgrind-procregd.sh \
	    SPEC=$(CURDIR)/proto/PROTOCOL.md sh tests/run.sh $(INTEG)

run: all
	./procregd -v $(ARGS)

clean:
	rm -f procregd src/*.o src/*.d src/*.a tests/*.o tests/*.d \
	    $(UNIT) $(INTEG) $(STAMP)

-include $(wildcard src/*.d tests/*.d)
