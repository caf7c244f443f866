# lunar - the single build truth.
#   make            the library lunar/core.so (the Lua modules are used in place)
#   make test       the busted suite; ends with one line "N passed, N failed"
#   make memcheck   every spec under valgrind (slow)
#   make demo       trains a model on the embedded data
#   make bench      lunar and PyTorch side by side (bench/RESULTS.md keeps the figures)
#   make install    into the Lua 5.4 paths under PREFIX (luarocks sets INST_LIBDIR/INST_LUADIR)
#   make format / make lint / make clean
# Switches: SANITIZE=1 (ASan + UBSan), DEBUG=1, OPENCL=0 (no OpenCL backend: no OpenCL or
# CLBlast packages needed).

PREFIX ?= /usr/local
INST_LIBDIR ?= $(PREFIX)/lib/lua/5.4
INST_LUADIR ?= $(PREFIX)/share/lua/5.4
# the data sets travel inside the Lua tree, where luarocks also copies them
INST_DATADIR ?= $(INST_LUADIR)/lunar/data/files
LUA ?= lua5.4
LUA_INCDIR ?= /usr/include/lua5.4
OPENCL ?= 1

CC ?= gcc
CFLAGS ?= -O3
# override: luarocks passes CFLAGS on the command line, and these flags must survive it
override CFLAGS += -std=c11 -fPIC -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-type-limits -D_GNU_SOURCE \
          -I$(LUA_INCDIR) -Icore
override LDFLAGS += -shared -fopenmp -Wl,-z,nodelete  # OpenMP workers outlive lua_close
# OpenBLAS: Debian's OpenMP build when it is installed (scripts/deps.sh installs it), so
# OpenBLAS and our OpenMP loops share one thread team. The default pthread build keeps a pool
# of its own, and two pools spinning on the same cores made training at 2 threads several
# times slower than at 1 (bench/RESULTS.md). Both builds have the soname libopenblas.so.0;
# the run path makes the loader take the OpenMP one whatever the system alternative says.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
OPENBLAS_OMP_DIR ?= /usr/lib/$(MULTIARCH)/openblas-openmp
OPENBLAS_OMP = -L$(OPENBLAS_OMP_DIR) -l:libopenblas.so.0 -Wl,-rpath,$(OPENBLAS_OMP_DIR)
OPENBLAS = $(if $(wildcard $(OPENBLAS_OMP_DIR)/libopenblas.so.0),$(OPENBLAS_OMP),-lopenblas)
LIBS = $(OPENBLAS) -lm -lz

ifeq ($(DEBUG),1)
override CFLAGS += -O0 -g3
endif
ifeq ($(SANITIZE),1)
SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
override CFLAGS += $(SAN) -g -DLUNAR_SANITIZE
override LDFLAGS += $(SAN)
BUILD = build/san
TEST_ENV = LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
           ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
else
BUILD = build/rel
endif

SRC = $(wildcard core/*.c core/cpu/*.c core/lua/*.c core/io/*.c)
HDR = $(wildcard core/*.h core/cpu/*.h core/lua/*.h core/io/*.h)

# OpenCL backend: core/opencl/*.c plus kernels/*.cl embedded as one C string (common.cl first)
ifeq ($(OPENCL),0)
# objects built with and without LUNAR_OPENCL never mix
BUILD := $(BUILD)-noopencl
else
CL_SRC = kernels/common.cl $(filter-out kernels/common.cl,$(sort $(wildcard kernels/*.cl)))
SRC += $(wildcard core/opencl/*.c) $(BUILD)/gen/opencl_source.c
HDR += $(wildcard core/opencl/*.h)
override CFLAGS += -DLUNAR_OPENCL
LIBS += -lclblast -lOpenCL
endif
OBJ = $(SRC:%.c=$(BUILD)/%.o)
OBJ := $(OBJ:$(BUILD)/$(BUILD)/%=$(BUILD)/%)
LIB = lunar/core.so

LUA_ENV = LUA_PATH_5_4="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
          LUA_CPATH_5_4="$(CURDIR)/?.so;;"

.PHONY: all deps test memcheck demo bench install uninstall clean format lint

all: deps $(LIB)

deps:
	@sh scripts/deps.sh build
ifneq ($(OPENCL),0)
	@sh scripts/deps.sh opencl
endif

$(BUILD)/gen/opencl_source.c: $(CL_SRC) scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh $@ $(CL_SRC)

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# a sanitized build and a plain one must never mix: the stamp says which one lunar/ holds
$(LIB): $(OBJ) Makefile
	@mkdir -p lunar
	$(CC) $(LDFLAGS) -o $@ $(OBJ) $(LIBS)
	@echo $(BUILD) > lunar/.build

# lunar/.build names the build the library came from: when it is another one (a sanitized
# build before a plain one), the library is relinked whatever the timestamps say. Decided
# when the Makefile is read, so parallel jobs cannot race over it.
ifneq ($(shell cat lunar/.build 2>/dev/null),$(BUILD))
.PHONY: $(LIB)
endif

test: deps $(LIB)
	@$(LUA_ENV) $(TEST_ENV) sh tests/run.sh $(TESTS)

# every spec under valgrind: no invalid access, no lost block (slow; not part of make test)
memcheck: deps $(LIB)
	@$(LUA_ENV) sh tests/memcheck.sh $(TESTS)

demo: deps $(LIB)
	@$(LUA_ENV) $(LUA) scripts/demo.lua

bench: deps $(LIB)
	@$(LUA_ENV) sh bench/run.sh

install: all
	install -d $(DESTDIR)$(INST_LIBDIR)/lunar $(DESTDIR)$(INST_LUADIR)/lunar
	install -m 755 $(LIB) $(DESTDIR)$(INST_LIBDIR)/lunar/core.so
	cd lua && find lunar -name '*.lua' | while read f; do \
	  install -d "$(DESTDIR)$(INST_LUADIR)/$$(dirname $$f)"; \
	  install -m 644 "$$f" "$(DESTDIR)$(INST_LUADIR)/$$f"; done
	install -d $(DESTDIR)$(INST_DATADIR)
	install -m 644 data/* $(DESTDIR)$(INST_DATADIR)

uninstall:
	rm -rf $(DESTDIR)$(INST_LIBDIR)/lunar $(DESTDIR)$(INST_LUADIR)/lunar $(DESTDIR)$(INST_DATADIR)

clean:
	rm -rf build lunar

format:
	clang-format -i $(SRC) $(HDR)

lint:
	@sh scripts/deps.sh lint
	luacheck lua tests scripts bench
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --std=c11 --inline-suppr -Icore --suppress=missingIncludeSystem \
	  --suppress=invalidPointerCast core  # byte buffers viewed as typed arrays, by design
