# Maestro build. `make test` is what CI runs; `make help` lists the targets.
GO        ?= go
# bash with pipefail, so that `go test | tee` fails when the tests do.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
BUILD     := build
WASM_DIR  := $(BUILD)/wasm
FILTERS   := $(notdir $(wildcard wasmfilter/fanout wasmfilter/slo))
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GOBIN     := $(shell $(GO) env GOPATH)/bin
# VERSION is what `maestro version` prints (linked into main.version).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# The packages that run goroutines side by side (the pipeline forks on
# every core, the server, watcher, rotation, batching and model cache, the
# gateway and its end-to-end suite): `make race` runs their tests under the
# race detector.
RACE_PKGS := ./controlplane/... ./internal/... ./certs/rotation/... \
             ./inference/batching/... ./inference/repository/... ./inference/server/... \
             ./cmd/maestro/internal/e2e/gateway
# Every package with golden files; each takes the same -update flag.
GOLDEN_PKGS := ./controlplane/xds ./controlplane/istio ./controlplane/bootstrap \
               ./controlplane/policy ./examples

.PHONY: all build run deps test test-short reliability vet lint race golden fmt bench bench-compare soak wasm proto fuzz help clean

all: build

help:
	@echo "build      build the binary ./maestro (the README's tour runs it)"
	@echo "run        start the inference server on the demo models"
	@echo "deps       install the tools the tests need (Debian's prometheus)"
	@echo "test       build the wasm filters, vet, and run every test"
	@echo "test-short the unit tests, without the end-to-end suites and the long cases (-short)"
	@echo "lint       golangci-lint (pinned in go.mod, configured in .golangci.yml)"
	@echo "race       the tests of the concurrent packages under the race detector"
	@echo "golden     rewrite every golden file (go test -update) after an intended change"
	@echo "reliability run only the TestReliability* suite, verbose, with its figures (docs/reliability.md)"
	@echo "bench      run the benchmarks and print a table"
	@echo "bench-compare  1-row ModelInfer against an empty gRPC call: throughput, server CPU, p99 ratios"
	@echo "soak       hold 2,000 req/s through the gateway for 60 s: no errors, flat memory (not in test)"
	@echo "wasm       build the proxy-wasm filters into $(WASM_DIR)"
	@echo "proto      regenerate the committed protobuf code"
	@echo "fuzz       run each fuzz target for a short while"

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o maestro ./cmd/maestro

run:
	$(GO) run ./cmd/maestro inference

wasm: $(addprefix $(WASM_DIR)/,$(addsuffix .wasm,$(FILTERS)))

$(WASM_DIR)/%.wasm: FORCE
	@mkdir -p $(WASM_DIR)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $@ ./wasmfilter/$*/cmd

.PHONY: FORCE
FORCE:

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# deps installs the tools the tests drive (promtool and prometheus, from
# Debian's prometheus package) when they are missing.
deps:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  else \
	    echo "the tests need promtool and prometheus: sudo apt-get install prometheus"; exit 1; \
	  fi; \
	fi

test: deps wasm vet
	MAESTRO_WASM_DIR=$(CURDIR)/$(WASM_DIR) $(GO) test -count=1 -timeout 20m ./...

# reliability runs the TestReliability* tests alone, verbose so their
# measured figures are printed. They are ordinary tests, already run by
# `make test` (and so by CI); this target is a convenience for reading or
# refreshing the figures in docs/reliability.md.
reliability:
	$(GO) test -count=1 -timeout 20m -run '^TestReliability' -v ./...

test-short: wasm
	MAESTRO_WASM_DIR=$(CURDIR)/$(WASM_DIR) $(GO) test -short \
	  $$($(GO) list ./... | grep -v -e /cmd/maestro/internal/e2e/)

# lint runs the golangci-lint version go.mod pins (`go tool`), so every
# machine runs the same linters; the first run builds it (a few minutes).
lint:
	$(GO) tool golangci-lint run ./...

race: wasm
	MAESTRO_WASM_DIR=$(CURDIR)/$(WASM_DIR) $(GO) test -race -short -count=1 -timeout 20m \
	  $(RACE_PKGS)

# golden rewrites the golden files from the current code; review the diff.
golden:
	$(GO) test -count=1 $(GOLDEN_PKGS) -update

bench: wasm
	@mkdir -p $(BUILD)
	MAESTRO_WASM_DIR=$(CURDIR)/$(WASM_DIR) $(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./... | tee $(BUILD)/bench.txt
	@echo; $(GO) run ./tools/benchtable < $(BUILD)/bench.txt

# bench-compare runs the inference server in its own process and compares a
# 1-row fraud ModelInfer with an empty unary call on it, in alternating
# rounds; BENCH_COMPARE_N sets the calls per figure.
BENCH_COMPARE_N ?= 20000
bench-compare:
	@mkdir -p $(BUILD)
	$(GO) test -run '^$$' -bench 'CompareEmptyRPC' -benchtime $(BENCH_COMPARE_N)x ./inference/server | tee $(BUILD)/bench-compare.txt
	@echo; echo "machine: $$(nproc) cores, $$(uptime | sed 's/.*load average/load average/')"
	@awk '/^BenchmarkCompareEmptyRPC/ { name=$$1; sub(/^BenchmarkCompareEmptyRPC\//, "", name); sub(/-[0-9]+$$/, "", name); \
	  for (i = 5; i < NF; i += 2) printf "%-12s %-20s %s\n", name, $$(i+1), $$i }' $(BUILD)/bench-compare.txt
# soak is the gateway's sustained-load check (issue 10): a minute at full
# load, so not part of `make test`.
soak: wasm
	MAESTRO_SOAK=1 MAESTRO_WASM_DIR=$(CURDIR)/$(WASM_DIR) $(GO) test -count=1 -v -run '^TestGatewaySoak$$' -timeout 10m ./cmd/maestro/internal/e2e/gateway

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg || exit 1; \
	  done; \
	done

proto:
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(GOBIN):$$PATH protoc -I inference/proto \
	  --go_out=inference/pb --go_opt=paths=source_relative \
	  --go-grpc_out=inference/pb --go-grpc_opt=paths=source_relative \
	  inference/proto/grpc_predict_v2.proto

clean:
	rm -rf $(BUILD) maestro
