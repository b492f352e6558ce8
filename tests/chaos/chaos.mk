# make chaos: the fault-injection suite on a stack of its own (ops/chaos; var/chaos). Options through
# CHAOS_ARGS, e.g. make chaos CHAOS_ARGS="--commands 20000 --smtp-outage 120 --seed 7".
.PHONY: chaos
chaos:
	$(SETUP)
	$(MAKE) all
	ops/chaos $(CHAOS_ARGS)
