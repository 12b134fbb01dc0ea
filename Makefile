# Entry points a newcomer needs; each target is one script.
.PHONY: test demo bench bench-sync bench-api build

build:
	go build -o postgres-seren-replicator ./cmd/postgres-seren-replicator

test:
	scripts/test.sh

demo:
	scripts/demo.sh

bench:
	scripts/bench.sh

bench-sync:
	scripts/bench-sync.sh

bench-api:
	scripts/bench-api.sh
