# baton: build, test, demo, bench, deps.
#
#   make            build/baton, build/libbaton.{a,so}, examples, benchmarks
#   make check      deps + build + every test; ends with "N passed, N failed, N skipped"
#   make demo       deps + build + the demo on 2 local ranks
#   make deps       install the Debian packages baton needs (apt-get; root)
#   make install PREFIX=/usr/local
#   SANITIZER=address|undefined|thread   build into build/san-$(SANITIZER) with that sanitizer
#   WITH_MPI=0 WITH_CUDA=0 WITH_NCCL=0 WITH_HWLOC=0   turn an optional feature off

CC      ?= cc
PREFIX  ?= /usr/local
CUDA_HOME ?= /usr/local/cuda
PKG_CONFIG ?= pkg-config
OPT     ?= -O2
Q       := $(if $(V),,@)

ifeq ($(SANITIZER),)
BUILD   := build
SANFLAGS :=
else
BUILD   := build/san-$(SANITIZER)
SANFLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

WARN    := -Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(OPT) -g -pthread -fPIC $(WARN) $(SANFLAGS) \
              -Iinclude -I. $(CFLAGS)
LIB_CFLAGS := -fvisibility=hidden
LDLIBS_ALL := -lcrypto -lyaml -lz -lm -lpthread -ldl

# ---- optional features: probed, overridable, one line each in the summary ----
have_mpicc := $(shell command -v mpicc 2>/dev/null)
ifeq ($(WITH_MPI),0)
HAVE_MPI := 0
else
HAVE_MPI := $(if $(have_mpicc),1,0)
endif
ifeq ($(HAVE_MPI),1)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
CFLAGS_ALL += -DBT_HAVE_MPI=1
endif

ifeq ($(WITH_HWLOC),0)
HAVE_HWLOC := 0
else
HAVE_HWLOC := $(shell $(PKG_CONFIG) --exists hwloc 2>/dev/null && echo 1 || echo 0)
endif
ifeq ($(HAVE_HWLOC),1)
CFLAGS_ALL += -DBT_HAVE_HWLOC=1 $(shell $(PKG_CONFIG) --cflags hwloc)
LDLIBS_ALL += $(shell $(PKG_CONFIG) --libs hwloc)
endif

ifeq ($(WITH_CUDA),0)
HAVE_CUDA := 0
else
HAVE_CUDA := $(shell test -f $(CUDA_HOME)/include/cuda_runtime.h && \
               test -e $(CUDA_HOME)/lib64/libcudart.so && echo 1 || echo 0)
endif
ifeq ($(HAVE_CUDA),1)
CFLAGS_ALL += -DBT_HAVE_CUDA=1 -isystem $(CUDA_HOME)/include
LDLIBS_ALL += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart
endif

ifeq ($(WITH_NCCL),0)
HAVE_NCCL := 0
else
HAVE_NCCL := $(shell test "$(HAVE_CUDA)" = 1 && test -f $(CUDA_HOME)/include/nccl.h && \
               test -e $(CUDA_HOME)/lib64/libnccl.so && echo 1 || echo 0)
endif
ifeq ($(HAVE_NCCL),1)
CFLAGS_ALL += -DBT_HAVE_NCCL=1
LDLIBS_ALL += -lnccl
endif

# ---- sources: one folder, one responsibility ----
# Optional backends are compiled only when their feature is present.
OPTIONAL_SRC := collectives/backend/mpi.c collectives/backend/nccl.c collectives/backend/cuda.c
LIB_SRC := $(wildcard common/*.c) $(wildcard rendezvous/*.c) $(wildcard collectives/*.c) \
           $(wildcard collectives/algo/*.c collectives/transport/*.c collectives/ps/*.c) \
           $(filter-out $(OPTIONAL_SRC),$(wildcard collectives/backend/*.c))
ifeq ($(HAVE_MPI),1)
LIB_SRC += collectives/backend/mpi.c
endif
ifeq ($(HAVE_NCCL),1)
LIB_SRC += collectives/backend/nccl.c
endif
ifeq ($(HAVE_CUDA),1)
LIB_SRC += collectives/backend/cuda.c
endif
LAUNCHER_SRC := $(wildcard launcher/*.c) $(wildcard k8s/*.c)
LIB_OBJ      := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LAUNCHER_OBJ := $(LAUNCHER_SRC:%.c=$(BUILD)/obj/%.o)

# examples/NAME.c -> one program; examples/DIR/*.c -> one program named after DIR (mnist -> mnist_cnn)
EXAMPLE_SINGLE := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
MNIST_SRC      := $(wildcard examples/mnist/*.c)
MNIST_BIN      := $(if $(MNIST_SRC),$(BUILD)/examples/mnist_cnn)
# bench/NAME.c -> one program each (mpi_* need mpicc)
BENCH_C        := $(filter-out bench/mpi_%.c,$(wildcard bench/*.c))
BENCH_BIN      := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_C))
ifeq ($(HAVE_MPI),1)
BENCH_MPI_BIN  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/mpi_*.c))
endif
# tests/unit/test_NAME.c -> a cmocka program; tests/progs/NAME.c -> helper programs for tests
UNIT_BIN       := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
TESTPROG_BIN   := $(patsubst tests/progs/%.c,$(BUILD)/tests/progs/%,$(wildcard tests/progs/*.c))

BATON   := $(BUILD)/baton
LIBA    := $(BUILD)/libbaton.a
LIBSO   := $(BUILD)/libbaton.so

.PHONY: all check demo deps install clean features bench test
all: $(BATON) $(LIBA) $(LIBSO) $(EXAMPLE_SINGLE) $(MNIST_BIN) $(BENCH_BIN) $(BENCH_MPI_BIN) \
     $(UNIT_BIN) $(TESTPROG_BIN) features

features:
	@printf '%s MPI    %s\n' $(if $(filter 1,$(HAVE_MPI)),✓,✗) \
	  $(if $(filter 1,$(HAVE_MPI)),"(mpicc: Open MPI backend and baseline)","(no mpicc or WITH_MPI=0: no MPI backend)")
	@printf '%s CUDA   %s\n' $(if $(filter 1,$(HAVE_CUDA)),✓,✗) \
	  $(if $(filter 1,$(HAVE_CUDA)),"($(CUDA_HOME): device buffers)","(no $(CUDA_HOME) or WITH_CUDA=0: host buffers only)")
	@printf '%s NCCL   %s\n' $(if $(filter 1,$(HAVE_NCCL)),✓,✗) \
	  $(if $(filter 1,$(HAVE_NCCL)),"(NCCL backend for GPU buffers)","(no nccl.h/libnccl or WITH_NCCL=0: no NCCL backend)")
	@printf '%s hwloc  %s\n' $(if $(filter 1,$(HAVE_HWLOC)),✓,✗) \
	  $(if $(filter 1,$(HAVE_HWLOC)),"(topology-aware placement)","(no hwloc or WITH_HWLOC=0: flat topology)")

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) $(if $(findstring mpi,$(notdir $<)),$(MPI_CFLAGS)) -MMD -MP -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIBSO): $(LIB_OBJ)
	$(Q)$(CC) -shared $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL) $(MPI_LIBS) $(LDFLAGS)

$(BATON): $(LAUNCHER_OBJ) $(LIBA)
	$(Q)$(CC) $(SANFLAGS) -o $@ $(LAUNCHER_OBJ) $(LIBA) $(LDLIBS_ALL) $(MPI_LIBS) $(LDFLAGS)

# Programs outside the library link the static library and see only include/.
LINK_PROG = $(CC) $(CFLAGS_ALL) -o $@ $(filter %.c,$^) $(LIBA) $(LDLIBS_ALL) $(MPI_LIBS) $(LDFLAGS)

$(BUILD)/examples/%: examples/%.c $(LIBA) include/baton.h
	@mkdir -p $(dir $@)
	$(Q)$(LINK_PROG)

$(BUILD)/examples/mnist_cnn: $(MNIST_SRC) $(wildcard examples/mnist/*.h) $(LIBA) include/baton.h
	@mkdir -p $(dir $@)
	$(Q)$(LINK_PROG) $(MNIST_LIBS)

$(BUILD)/bench/%: bench/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(Q)$(LINK_PROG)

$(BUILD)/bench/mpi_%: bench/mpi_%.c
	@mkdir -p $(dir $@)
	$(Q)mpicc -O2 -std=c11 -D_GNU_SOURCE $(WARN) -o $@ $< -lm

# Unit tests may include internal headers; the launcher's objects (less main) come in an
# archive so a test links only what it uses.
LAUNCHER_LIB := $(BUILD)/liblauncher.a
$(LAUNCHER_LIB): $(filter-out %/launcher/main.o,$(LAUNCHER_OBJ))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIBA) $(LAUNCHER_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LAUNCHER_LIB) $(LIBA) -lcmocka \
	  $(LDLIBS_ALL) $(MPI_LIBS) $(LDFLAGS)

$(BUILD)/tests/progs/%: tests/progs/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(Q)$(LINK_PROG)

# ---- the two commands ----
# Debian packages baton needs (DESIGN.md, Dependencies); only the missing ones are installed.
DEB_PKGS := gcc make pkg-config libyaml-dev libhwloc-dev libssl-dev zlib1g-dev libcmocka-dev \
            openmpi-bin libopenmpi-dev dataset-fashion-mnist python3-jsonschema python3-yaml \
            python3-torch iproute2 procps
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	  grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing" $$missing; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install:" $$missing; exit 1; fi; \
	  apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null \
	  || { echo "make deps: apt-get install failed for:" $$missing; exit 1; }; \
	else echo "make deps: all $(words $(DEB_PKGS)) packages present"; fi

check: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) SANITIZER=$(SANITIZER) ./tests/run_tests.sh $(TESTS)

test: all
	@BUILD=$(BUILD) SANITIZER=$(SANITIZER) ./tests/run_tests.sh $(TESTS)

demo: deps
	@$(MAKE) --no-print-directory all
	@./examples/demo.sh $(BUILD)

bench: all
	@echo "see README.md, Benchmarks: each benchmark's command is listed there"

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BATON) $(DESTDIR)$(PREFIX)/bin/baton
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libbaton.a
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libbaton.so
	install -m 644 include/baton.h $(wildcard include/baton_ps.h) $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/.*BATON_VERSION_STRING "\(.*\)"/\1/p' include/baton.h)|' \
	  -e 's|@LIBS@|$(LDLIBS_ALL) $(MPI_LIBS)|' baton.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/baton.pc

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(LAUNCHER_OBJ:.o=.d)
