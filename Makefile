# tokenrelay. `make run` starts the whole pipeline in one process on embedded
# Redis and NATS and the vendor sandbox; `make test` runs the test suite
# (it needs the real Redis and NATS that scripts/ensure-services.sh starts).
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin
FUZZTIME  ?= 2m
# The image's version (make image VERSION=v1.4.0) and KMS drivers (GO_TAGS=kms_aws).
VERSION   ?= dev
GO_TAGS   ?=

.PHONY: run run-traced test test-tracing test-short image image-test bench bench-pipeline bench-fleet bench-budget bench-webhooks bench-requests bench-syncs bench-tokenget bench-shard chaos lint build fuzz fuzz-short services clean

run:
	$(GO) run ./cmd/tokenrelay-dev

# make run with every renewal traced into a Jaeger of its own (built from
# tools/jaeger the first time); its address is printed in the live view.
run-traced:
	$(GO) run ./cmd/tokenrelay-dev -traces

test: services
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	@$(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory image-test

# The container image, localhost/tokenrelay:$(VERSION): scripts/image.sh
# compiles the programs and builds the Dockerfile with buildah (no Docker
# daemon, nothing pulled); TestImage then checks what it holds and runs the
# scheduler and the worker from it against the real Redis and NATS.
image: services
	VERSION='$(VERSION)' GO_TAGS='$(GO_TAGS)' bash scripts/image.sh
	IMAGE_TEST=1 TOKENRELAY_IMAGE='localhost/tokenrelay:$(VERSION)' VERSION='$(VERSION)' GO_TAGS='$(GO_TAGS)' \
		$(GO) test -count=1 -v -timeout 10m -run '^TestImage$$' ./deployments

# The same with an image of the test's own (its own buildah storage); on
# its own, as it compiles everything again.
image-test:
	IMAGE_TEST=1 TOKENRELAY_IMAGE= $(GO) test -count=1 -timeout 15m -run '^TestImage$$' ./deployments

# Go fuzz targets (package:FuzzName). Their seed corpora run in every `go
# test`; fuzz-short (part of `make test`) fuzzes each briefly, `make fuzz`
# for FUZZTIME each.
FUZZ_TARGETS = ./internal/webhooks/verify:FuzzStandardWebhooks ./internal/webhooks/fhirnotify:FuzzParse ./config:FuzzParse \
	./internal/natsinbox:FuzzReplySubject ./internal/requests:FuzzDecodeRequest ./secret:FuzzScrub
# fuzz-short counts executions rather than seconds: with go1.26 a duration
# can end in a spurious "context deadline exceeded" failure, no input
# written (golang/go#75804, fixed in go1.27). 60000 runs take 1-5 s here.
FUZZTIME_SHORT ?= 60000x

fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME_SHORT)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME_SHORT) "$${t%%:*}" || exit 1; \
	done

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

# Traces read back from a real Jaeger (issue 14): builds Jaeger from the
# tools/jaeger module once (a few minutes; cached in ~/.cache/tokenrelay),
# then runs the end-to-end trace test. .ci/run runs it after `make test`.
test-tracing: services
	TOKENRELAY_JAEGER_TEST=1 $(GO) test -count=1 -run '^TestRenewalIsOneTraceInJaeger$$' -v ./internal/tracing

test-short:
	$(GO) test -short -count=1 $(PKGS)

services:
	@bash scripts/ensure-services.sh

# Every load run, one after another (about 25 minutes); each also has its
# own target and flags variable.
bench: bench-pipeline bench-fleet bench-budget bench-requests bench-syncs bench-webhooks bench-tokenget bench-shard

# Issue 2: 100,000 credentials through the real pipeline, against bare asynq.
bench-pipeline: services
	$(GO) run ./bench/pipeline $(BENCHFLAGS)

# Issue 3: importing 100,000 credentials, and a mixed fleet of every kind.
bench-fleet: services
	$(GO) run ./bench/fleet $(FLEETFLAGS)

# Benchmark (a) of issue 4: the shared rate budget against redis_rate (GCRA).
bench-budget: services
	$(GO) run ./bench/budget $(BUDGETFLAGS)

# Benchmark of issue 5: verified, deduplicated webhooks into JetStream
# against a bare publishing handler.
bench-webhooks: services
	$(GO) run ./bench/webhooks $(WEBHOOKFLAGS)

# Benchmarks (b) and (c) of issue 4: request jobs' achieved rate at a
# compressed window, and their throughput against a plain HTTP loop; with
# issue 11's Redis round trips per request job and bytes per queued request.
bench-requests: services
	$(GO) run ./bench/requests $(REQUESTFLAGS)

# Issue 11: a 100,000-resource sync in pages of 100 against an account
# limited to 500 per sliding window (6 s compressed, then the real minute).
bench-syncs: services
	$(GO) run ./bench/syncs $(SYNCFLAGS)

# Issue 12: token.get p50/p99 in normal running and during Redis stalls
# (CLIENT PAUSE on a redis-server of its own), against the service as it was.
bench-tokenget: services
	$(GO) run ./bench/tokenget $(TOKENGETFLAGS)

# Issue 12: what one Redis shard carries (credentials, renewals per second,
# queued requests) on a Redis Cluster of its own, with the store's hash tag.
bench-shard: services
	$(GO) run ./bench/shard $(SHARDFLAGS)

# Issue 12: an operator's bad day against the real binaries (150
# credentials with 30 s tokens, 2 schedulers and 3 workers SIGKILLed every
# ~10 s, Redis SIGKILLed and restarted from its AOF, NATS stopped for a
# minute), then a HealthSync key rotation whose workers are SIGKILLed at
# create, verify and revoke; each judged, about 13 minutes in all.
# Shortened runs of both are part of make test.
chaos: services
	$(GO) run ./bench/chaos $(CHAOSFLAGS)
	$(GO) run ./bench/chaos -scenario rotation $(CHAOSROTATIONFLAGS)

lint:
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

build:
	mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

clean:
	rm -rf $(BIN) build
