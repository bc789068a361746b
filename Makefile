# sluice build. Sources are found by directory, so a new module needs no edit here:
#   src/**/*.c (except src/main.c)  -> build/libsluice.a
#   src/main.c                      -> build/sluice
#   tools/mock/*.c                  -> build/sluice-mock
#   tests/unit/test_*.c             -> build/tests/test_*   (cmocka, one binary per module)
#   tests/fuzz/fuzz_*.c             -> build/fuzz/fuzz_*    (libFuzzer, clang)
# Every variant (release, asan) lives under its own build directory.

PKGS      := libuv libcurl yaml-0.1 hiredis openssl
CC        ?= cc
BUILD     ?= build
VERSION   := 0.1.0
GIT_REV   := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT       ?= -O2
SAN       ?=
CFLAGS    := -std=c11 -D_GNU_SOURCE -g $(OPT) $(SAN) -Wall -Wextra -Werror -Wno-unused-parameter \
             -Wshadow -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing -pthread \
             -Isrc $(PKG_CFLAGS) -DSL_VERSION='"$(VERSION)"' -DSL_GIT_REV='"$(GIT_REV)"' \
             -DSL_BUILD_FLAGS='"$(strip $(OPT) $(SAN))"' $(EXTRA_CFLAGS)
LDFLAGS   := $(SAN) -pthread
LDLIBS    := $(PKG_LIBS) -lm

LIB_SRCS  := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
MOCK_SRCS := $(shell find tools/mock -name '*.c' 2>/dev/null | sort)
MOCK_OBJS := $(MOCK_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(filter-out $(TEST_SRCS),$(wildcard tests/unit/*.c))

# `make V=1` shows the full commands.
.PHONY: all deps run test test-unit test-e2e test-fuzz asan bench bench-lb clean check-banned fmt

all: $(BUILD)/sluice $(BUILD)/sluice-mock

deps:
	@scripts/install-deps.sh

Q := $(if $(V),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libsluice.a: $(LIB_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/sluice: $(BUILD)/obj/src/main.o $(BUILD)/libsluice.a
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/sluice-mock: $(MOCK_OBJS) $(BUILD)/libsluice.a
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(TEST_HELPERS) $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(TEST_HELPERS) $(BUILD)/libsluice.a $(LDLIBS) -lcmocka $(LDFLAGS)

unit-bins: $(TEST_BINS)

# The ASan+UBSan variant of everything, in build/asan.
asan:
	$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all unit-bins

check-banned:
	@! grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol)[[:space:]]*\(' $(wildcard src tools) --include='*.c' --include='*.h' \
	  || { echo "banned function used (ARCHITECTURE.md habit 11)"; exit 1; }

run: deps all
	scripts/run-quickstart.sh

test: deps check-banned
	@scripts/test.sh

bench: deps all
	@bench/run.sh

bench-lb: deps all
	@bench/lb/run.sh

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
