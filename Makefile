# baton: build, test, demo, bench, deps.
#
#   make            build/baton, build/libbaton.{a,so}, examples, benchmarks
#   make check      deps + build + every test; ends with "N passed, N failed, N skipped"
#   make demo       deps + build + the demo on 2 local ranks
#   make deps       install the Debian packages baton needs (apt-get; root)
#   make install PREFIX=/usr/local
#   make fuzz       build the libFuzzer targets of tests/fuzz/ (clang) into build/fuzz and run
#                   each for FUZZ_SECONDS (default 60); one line per target
#   SANITIZER=address|undefined|thread   build into build/san-$(SANITIZER) with that sanitizer
#   WITH_MPI=0 WITH_CUDA=0 WITH_NCCL=0 WITH_HWLOC=0 WITH_TORCH=0   turn an optional feature off

CC      ?= cc
PREFIX  ?= /usr/local
CUDA_HOME ?= /usr/local/cuda
PKG_CONFIG ?= pkg-config
OPT     ?= -O2
Q       := $(if $(V),,@)
# Without V=1 each step says what it makes in one short line (V=1: the whole command).
say      = $(if $(V),,@printf '  %-7s %s\n' $(1) $(2);)

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

NPROC   := $(shell nproc 2>/dev/null || echo 1)
VERSION := $(shell sed -n 's/.*BATON_VERSION_STRING "\(.*\)"/\1/p' include/baton.h)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))

# ---- libraries: each probed with a compile-and-link test, one ✓/✗ line each ----
# $(call probe,HEADER,LINK FLAGS[,COMPILER]): 1 when a program including HEADER links.
HASH := \#
probe = $(shell { printf '$(HASH)include <%s>\n' $(1); echo 'int main(void) { return 0; }'; } | \
          $(or $(3),$(CC)) -x c - -o /dev/null $(2) >/dev/null 2>&1 && echo 1 || echo 0)
# The core needs these three; without one, building stops with the package to install.
HAVE_YAML   := $(call probe,yaml.h,-lyaml)
HAVE_CRYPTO := $(call probe,openssl/hmac.h,-lcrypto)
HAVE_ZLIB   := $(call probe,zlib.h,-lz)
MISSING_CORE := $(if $(filter 0,$(HAVE_YAML)),libyaml-dev) \
                $(if $(filter 0,$(HAVE_CRYPTO)),libssl-dev) $(if $(filter 0,$(HAVE_ZLIB)),zlib1g-dev)
HAVE_CMOCKA := $(call probe,stdarg.h stddef.h stdint.h setjmp.h cmocka.h,-lcmocka)

# Building without them stops here, in one line; deps, clean, features, check and demo go on
# (check and demo install them first, then build in a second make).
ifneq ($(strip $(MISSING_CORE)),)
ifneq ($(filter-out deps clean features check demo format,$(or $(MAKECMDGOALS),all)),)
$(error baton: cannot build: install $(strip $(MISSING_CORE)) (apt-get install $(strip $(MISSING_CORE)), or make deps))
endif
endif

have_mpicc := $(shell command -v mpicc 2>/dev/null)
HAVE_MPI := $(if $(filter 0,$(WITH_MPI)),0,$(if $(have_mpicc),$(call probe,mpi.h,,mpicc),0))
ifeq ($(HAVE_MPI),1)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
endif

HAVE_HWLOC := $(if $(filter 0,$(WITH_HWLOC)),0,$(call probe,hwloc.h,-lhwloc))
ifeq ($(HAVE_HWLOC),1)
HWLOC_CFLAGS := -DBT_HAVE_HWLOC=1 $(shell $(PKG_CONFIG) --cflags hwloc 2>/dev/null)
HWLOC_LIBS   := $(or $(shell $(PKG_CONFIG) --libs hwloc 2>/dev/null),-lhwloc)
endif
# The launcher's etcd rendezvous (--rdzv-backend etcd): libcurl and cJSON, launcher only.
HAVE_ETCD := $(if $(filter 0,$(WITH_ETCD)),0,$(call probe,curl/curl.h cjson/cJSON.h,-lcurl -lcjson))
ifeq ($(HAVE_ETCD),1)
HWLOC_CFLAGS += -DBT_HAVE_ETCD=1
HWLOC_LIBS   += -lcurl -lcjson
endif

CUDA_FLAGS := -isystem $(CUDA_HOME)/include
CUDA_LIBS  := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart
HAVE_CUDA := $(if $(filter 0,$(WITH_CUDA)),0,$(call probe,cuda_runtime.h,$(CUDA_FLAGS) $(CUDA_LIBS)))
HAVE_NCCL := $(strip $(if $(filter 0,$(WITH_NCCL)),0,$(if $(filter 1,$(HAVE_CUDA)),\
               $(call probe,nccl.h,$(CUDA_FLAGS) $(CUDA_LIBS) -lnccl),0)))

# PyTorch (docs/pytorch.md): the torch.distributed backend is a C++ extension built with the
# system's g++ against Debian's libtorch-dev and pybind11-dev, for the torch that PYTHON (Debian's
# is importable from /usr/bin/python3 only) imports; found only when all of them agree.
PYTHON    ?= /usr/bin/python3
CXX_TORCH ?= g++
TORCH_INC := /usr/include/torch/csrc/distributed/c10d/ProcessGroup.hpp
TORCH_VERSION := $(if $(filter 0,$(WITH_TORCH)),,$(shell $(PYTHON) -c \
  'import torch, torch.distributed as d; assert d.is_available(); print(torch.__version__)' 2>/dev/null))
TORCH_WHY := $(strip $(if $(filter 0,$(WITH_TORCH)),WITH_TORCH=0,\
  $(if $(TORCH_VERSION),,$(PYTHON) cannot import torch.distributed (python3-torch))\
  $(if $(wildcard $(TORCH_INC)),,no $(TORCH_INC) (libtorch-dev))\
  $(if $(wildcard /usr/include/pybind11/pybind11.h),,no pybind11 (pybind11-dev))\
  $(if $(shell command -v $(CXX_TORCH) 2>/dev/null),,no $(CXX_TORCH))))
ifneq ($(TORCH_VERSION),)
TORCH_HDR_VERSION := $(shell sed -n 's/^\#define TORCH_VERSION_MAJOR \([0-9]*\)/\1/p;s/^\#define TORCH_VERSION_MINOR \([0-9]*\)/\1/p' /usr/include/torch/csrc/api/include/torch/version.h 2>/dev/null | paste -sd.)
ifneq ($(TORCH_HDR_VERSION),$(shell echo '$(TORCH_VERSION)' | cut -d. -f1-2))
TORCH_WHY += libtorch-dev's headers are torch $(TORCH_HDR_VERSION) but $(PYTHON) has torch $(TORCH_VERSION)
endif
endif
HAVE_TORCH := $(if $(TORCH_WHY),0,1)
PY_INCLUDES := $(if $(filter 1,$(HAVE_TORCH)),$(shell $(PYTHON)-config --includes 2>/dev/null || \
  $(PYTHON) -c 'import sysconfig; print("-I" + sysconfig.get_paths()["include"])'))
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYDIR ?= $(PREFIX)/lib/python$(PY_VERSION)/dist-packages

# ---- sources: one folder, one responsibility ----
# The core (libbaton) links none of Open MPI, CUDA or NCCL: those backends are plugins, each a
# shared object of its own in $(BUILD)/plugins, built when its library is found.
PLUGIN_SRC := collectives/backend/mpi.c collectives/backend/nccl.c collectives/backend/cuda.c \
              collectives/backend/glue.c
LIB_SRC := $(wildcard common/*.c) $(wildcard rendezvous/*.c) $(wildcard collectives/*.c) \
           $(wildcard collectives/algo/*.c collectives/transport/*.c collectives/ps/*.c) \
           $(filter-out $(PLUGIN_SRC),$(wildcard collectives/backend/*.c))
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
LIBSO_REAL := $(LIBSO).$(VERSION)
PLUGIN_DIR := $(BUILD)/plugins
PY_PKG   := $(patsubst python/%,$(BUILD)/python/%,$(wildcard python/baton/*.py))
TORCH_EXT := $(if $(filter 1,$(HAVE_TORCH)),$(BUILD)/python/baton/_torch.so)
PLUGINS := $(if $(filter 1,$(HAVE_MPI)),$(PLUGIN_DIR)/libbaton-mpi.so) \
           $(if $(filter 1,$(HAVE_CUDA)),$(PLUGIN_DIR)/libbaton-cuda.so) \
           $(if $(filter 1,$(HAVE_NCCL)),$(PLUGIN_DIR)/libbaton-nccl.so)
ifeq ($(HAVE_CMOCKA),0)
UNIT_BIN :=
endif

.PHONY: all check demo deps install clean features bench test format fuzz fuzz-build fuzz-bins
all: $(BATON) $(LIBA) $(LIBSO) $(PLUGINS) $(EXAMPLE_SINGLE) $(MNIST_BIN) $(BENCH_BIN) \
     $(BENCH_MPI_BIN) $(UNIT_BIN) $(TESTPROG_BIN) $(PY_PKG) $(TORCH_EXT) features

yes_no = $(if $(filter 1,$(1)),✓,✗)
features:
	@printf '%s libyaml  %s\n' $(call yes_no,$(HAVE_YAML)) "(YAML and TF_CONFIG; core: libyaml-dev)"
	@printf '%s libcrypto %s\n' $(call yes_no,$(HAVE_CRYPTO)) "(HMAC of the job token; core: libssl-dev)"
	@printf '%s zlib     %s\n' $(call yes_no,$(HAVE_ZLIB)) "(gzip'd IDX files; core: zlib1g-dev)"
	@printf '%s cmocka   %s\n' $(call yes_no,$(HAVE_CMOCKA)) \
	  $(if $(filter 1,$(HAVE_CMOCKA)),"(unit tests)","(no libcmocka-dev: unit tests not built; make deps installs it)")
	@printf '%s hwloc    %s\n' $(call yes_no,$(HAVE_HWLOC)) \
	  $(if $(filter 1,$(HAVE_HWLOC)),"(topology-aware placement)","(no libhwloc-dev or WITH_HWLOC=0: flat topology)")
	@printf '%s etcd     %s\n' $(call yes_no,$(HAVE_ETCD)) \
	  $(if $(filter 1,$(HAVE_ETCD)),"(--rdzv-backend etcd: libcurl, cJSON)","(no libcurl4-openssl-dev/libcjson-dev or WITH_ETCD=0: no etcd rendezvous)")
	@printf '%s MPI      %s\n' $(call yes_no,$(HAVE_MPI)) \
	  $(if $(filter 1,$(HAVE_MPI)),"(plugin libbaton-mpi.so: Open MPI backend; mpicc baseline)","(no mpicc or WITH_MPI=0: no Open MPI plugin)")
	@printf '%s CUDA     %s\n' $(call yes_no,$(HAVE_CUDA)) \
	  $(if $(filter 1,$(HAVE_CUDA)),"(plugin libbaton-cuda.so: device buffers, $(CUDA_HOME))","(no $(CUDA_HOME) or WITH_CUDA=0: host buffers only)")
	@printf '%s NCCL     %s\n' $(call yes_no,$(HAVE_NCCL)) \
	  $(if $(filter 1,$(HAVE_NCCL)),"(plugin libbaton-nccl.so: NCCL for GPU buffers)","(no nccl.h/libnccl or WITH_NCCL=0: no NCCL plugin)")
	@printf '%s torch    %s\n' $(call yes_no,$(HAVE_TORCH)) \
	  $(if $(filter 1,$(HAVE_TORCH)),"(torch.distributed backend \"baton\" for torch $(TORCH_VERSION): $(BUILD)/python/baton/_torch.so)","($(TORCH_WHY): no torch.distributed backend; the baton Python package is built)")

# Per-file flags: the plugins' libraries' headers, and where the core looks for plugins.
$(BUILD)/obj/collectives/backend/mpi.o: EXTRA_CFLAGS := $(MPI_CFLAGS)
$(BUILD)/obj/collectives/backend/cuda.o $(BUILD)/obj/collectives/backend/nccl.o: \
  EXTRA_CFLAGS := $(CUDA_FLAGS)
$(BUILD)/obj/collectives/backend/plugin.o: \
  EXTRA_CFLAGS := -DBT_PLUGIN_DIRS='"$(abspath $(PLUGIN_DIR)):$(PREFIX)/lib/baton"'
$(LAUNCHER_OBJ): EXTRA_CFLAGS := $(HWLOC_CFLAGS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) $(EXTRA_CFLAGS) -MMD -MP -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

# libbaton.so.X.Y.Z with the SONAME libbaton.so.X, and the two links to it.
$(LIBSO_REAL): $(LIB_OBJ)
	$(call say,LD,$@)$(CC) -shared $(SANFLAGS) -Wl,-soname,libbaton.so.$(SOMAJOR) -o $@ $^ $(LDLIBS_ALL) $(LDFLAGS)
$(LIBSO): $(LIBSO_REAL)
	$(Q)ln -sf $(notdir $<) $(LIBSO).$(SOMAJOR) && ln -sf $(notdir $<) $@

# A plugin: its backend, the glue to the core, and copies of the core's stateless helpers; it
# exports only its entry point, and (without a sanitizer) may leave no symbol undefined.
PLUGIN_OBJ := $(addprefix $(BUILD)/obj/,collectives/backend/glue.o common/err.o common/param.o \
                collectives/reduce.o)
PLUGIN_LD  := -shared $(SANFLAGS) -Wl,--version-script=collectives/backend/plugin.map \
              $(if $(SANITIZER),,-Wl,-z,defs)
$(PLUGIN_DIR)/libbaton-mpi.so: $(BUILD)/obj/collectives/backend/mpi.o $(PLUGIN_OBJ)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $(PLUGIN_LD) -o $@ $^ $(MPI_LIBS) -lm -lpthread $(LDFLAGS)
$(PLUGIN_DIR)/libbaton-cuda.so: $(BUILD)/obj/collectives/backend/cuda.o $(PLUGIN_OBJ)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $(PLUGIN_LD) -o $@ $^ $(CUDA_LIBS) -lm -lpthread $(LDFLAGS)
$(PLUGIN_DIR)/libbaton-nccl.so: $(BUILD)/obj/collectives/backend/nccl.o $(PLUGIN_OBJ)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $(PLUGIN_LD) -o $@ $^ $(CUDA_LIBS) -lnccl -lm -lpthread $(LDFLAGS)

$(BATON): $(LAUNCHER_OBJ) $(LIBA)
	$(call say,LD,$@)$(CC) $(SANFLAGS) -o $@ $(LAUNCHER_OBJ) $(LIBA) $(LDLIBS_ALL) $(HWLOC_LIBS) $(LDFLAGS)

# Programs outside the library link the static library and see only include/; the two that
# put buffers on a GPU themselves (allreduce_bench, cuda_check) also link the CUDA runtime.
PROG_CUDA = $(if $(and $(filter 1,$(HAVE_CUDA)),$(filter %allreduce_bench %cuda_check,$@)),\
              -DBT_HAVE_CUDA=1 $(CUDA_FLAGS) $(CUDA_LIBS))
LINK_PROG = $(CC) $(CFLAGS_ALL) -o $@ $(filter %.c,$^) $(PROG_CUDA) $(LIBA) $(LDLIBS_ALL) $(LDFLAGS)

$(BUILD)/examples/%: examples/%.c $(LIBA) include/baton.h
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(LINK_PROG)

$(BUILD)/examples/mnist_cnn: $(MNIST_SRC) $(wildcard examples/mnist/*.h) $(LIBA) include/baton.h
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(LINK_PROG) $(MNIST_LIBS)

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) $(LIBA)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(LINK_PROG)

$(BUILD)/bench/mpi_%: bench/mpi_%.c $(wildcard bench/*.h)
	@mkdir -p $(dir $@)
	$(call say,MPICC,$@)mpicc -O2 -std=c11 -D_GNU_SOURCE $(WARN) -o $@ $< -lm

# The Python package: copied, with the torch version the extension is built for; the extension
# links libbaton.so (found beside the package in build/ and in PREFIX/lib) and c10d's libraries.
$(BUILD)/python/baton/%.py: python/baton/%.py
	@mkdir -p $(dir $@)
	$(call say,PY,$@)sed 's|@TORCH_VERSION@|$(TORCH_VERSION)|' $< > $@
TORCH_CXXFLAGS := -std=c++17 $(OPT) -g -fPIC -Wall -Wextra $(SANFLAGS) -Iinclude $(PY_INCLUDES) \
                  -isystem /usr/include/torch/csrc/api/include
$(TORCH_EXT): python/baton_torch.cpp include/baton.h $(LIBSO)
	@mkdir -p $(dir $@)
	$(call say,CXX,$@)$(CXX_TORCH) $(TORCH_CXXFLAGS) -shared -o $@ $< -L$(BUILD) -lbaton \
	  -ltorch -ltorch_cpu -lc10 -ltorch_python -Wl,-rpath,'$$ORIGIN/../..:$$ORIGIN/../../..' $(LDFLAGS)

# Unit tests may include internal headers; the launcher's objects (less main) come in an
# archive so a test links only what it uses.
LAUNCHER_LIB := $(BUILD)/liblauncher.a
$(LAUNCHER_LIB): $(filter-out %/launcher/main.o,$(LAUNCHER_OBJ))
	@mkdir -p $(dir $@)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIBA) $(LAUNCHER_LIB)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $(CFLAGS_ALL) $(HWLOC_CFLAGS) -o $@ $< $(LAUNCHER_LIB) $(LIBA) -lcmocka \
	  $(LDLIBS_ALL) $(HWLOC_LIBS) $(LDFLAGS)

# The collective simulator records the reductions the algorithms do themselves (rd.c).
$(BUILD)/tests/progs/collsim: tests/progs/collsim.c $(LIBA)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $(CFLAGS_ALL) -Wl,--wrap=bt__reduce2 -o $@ $< $(LIBA) $(LDLIBS_ALL) \
	  $(LDFLAGS)

$(BUILD)/tests/progs/%: tests/progs/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(LINK_PROG)

# ---- fuzzing: tests/fuzz/fuzz_NAME.c -> build/fuzz/fuzz/fuzz_NAME (docs/testing.md, Fuzzing) ----
# The library and launcher objects are rebuilt with clang and the fuzzer's instrumentation in
# build/fuzz (a make of its own), so the normal build is untouched. `make fuzz` runs each
# target for FUZZ_SECONDS on a copy of its corpus (tests/fuzz/run.sh prints one line each).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=all
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_MNIST   := $(BUILD)/obj/examples/mnist/idx.o $(BUILD)/obj/examples/mnist/ckpt.o

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=$(FUZZ_CC) SANFLAGS="$(FUZZ_SAN)" \
	  WITH_MPI=0 WITH_CUDA=0 WITH_NCCL=0 fuzz-bins

fuzz-bins: $(FUZZ_BIN)
.SECONDARY: $(FUZZ_MNIST)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_MNIST) $(LIBA) $(LAUNCHER_LIB)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer $(HWLOC_CFLAGS) -o $@ $< $(FUZZ_MNIST) \
	  $(LAUNCHER_LIB) $(LIBA) $(LDLIBS_ALL) $(HWLOC_LIBS) $(LDFLAGS)

fuzz: fuzz-build
	@./tests/fuzz/run.sh $(FUZZ_SECONDS)

# ---- the two commands ----
# Debian packages baton needs (DESIGN.md, Dependencies); only the missing ones are installed.
DEB_PKGS := gcc make pkg-config libyaml-dev libhwloc-dev libssl-dev zlib1g-dev libcmocka-dev \
            openmpi-bin libopenmpi-dev dataset-fashion-mnist python3-jsonschema python3-yaml \
            python3-torch libtorch-dev pybind11-dev g++ iproute2 procps clang-format clang libclang-rt-dev \
            etcd-server libcurl4-openssl-dev libcjson-dev python3-prometheus-client curl gnuplot-nox strace
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

# The tests run $(JOBS) at a time (the number of CPUs; JOBS=1 runs them one after another).
JOBS ?= $(NPROC)
check: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@BUILD=$(BUILD) SANITIZER=$(SANITIZER) JOBS=$(JOBS) ./tests/run_tests.sh $(TESTS)

test: all
	@BUILD=$(BUILD) SANITIZER=$(SANITIZER) JOBS=$(JOBS) ./tests/run_tests.sh $(TESTS)

demo: deps
	@echo "make demo: building baton, then training the MNIST CNN on 2 local ranks"
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@./examples/demo.sh $(BUILD)

# Formats every C file with the checked-in .clang-format (tests/t_format.sh checks it).
format:
	git ls-files -z '*.c' '*.h' | xargs -0 clang-format -i --style=file

bench: all
	@echo "see docs/performance.md: each benchmark's command, method and figures are listed there"

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/baton $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BATON) $(DESTDIR)$(PREFIX)/bin/baton
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libbaton.a
	install -m 755 $(LIBSO_REAL) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(notdir $(LIBSO_REAL)) $(DESTDIR)$(PREFIX)/lib/libbaton.so.$(SOMAJOR)
	ln -sf $(notdir $(LIBSO_REAL)) $(DESTDIR)$(PREFIX)/lib/libbaton.so
	$(if $(strip $(PLUGINS)),install -m 755 $(PLUGINS) $(DESTDIR)$(PREFIX)/lib/baton/)
	install -m 644 include/baton.h $(wildcard include/baton_ps.h) $(DESTDIR)$(PREFIX)/include/
	install -d $(DESTDIR)$(PYDIR)/baton
	install -m 644 $(PY_PKG) $(DESTDIR)$(PYDIR)/baton/
	$(if $(TORCH_EXT),install -m 755 $(TORCH_EXT) $(DESTDIR)$(PYDIR)/baton/)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	  -e 's|@LIBS@|$(LDLIBS_ALL)|' baton.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/baton.pc

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(LAUNCHER_OBJ:.o=.d) $(addprefix $(BUILD)/obj/,$(PLUGIN_SRC:.c=.d))
