# tokenrelay. `make run` starts the whole pipeline in one process on embedded
# Redis and NATS and the vendor sandbox; `make test` runs the test suite
# (it needs the real Redis and NATS that scripts/ensure-services.sh starts).
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin
FUZZTIME  ?= 2m

.PHONY: run test test-short bench lint build fuzz services clean

run:
	$(GO) run ./cmd/tokenrelay dev

test: services
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

services:
	@bash scripts/ensure-services.sh

bench: services
	$(GO) run ./bench/pipeline $(BENCHFLAGS)

lint:
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

build:
	mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

clean:
	rm -rf $(BIN)
