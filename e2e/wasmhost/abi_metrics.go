package wasmhost

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// --- metrics ---

// proxy_define_metric(metric_type, name_data, name_size, return_metric_id).
// The same name defined twice gets the same id.
func (vm *VM) proxyDefineMetric(_ context.Context, mod api.Module, s []uint64) uint32 {
	metricType, nameData, nameSize, retMetricID := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3)
	idx := vm.cfg.Stats.Define(MetricType(metricType), vm.readString(mod, nameData, nameSize))
	if idx < 0 {
		return statusBadArgument
	}
	id := uint32(len(vm.metricIDs))
	for gid, i := range vm.metricIDs {
		if i == idx {
			id = gid
		}
	}
	vm.metricIDs[id] = idx
	mod.Memory().WriteUint32Le(retMetricID, id)
	return statusOK
}

// proxy_increment_metric(metric_id, offset i64)
func (vm *VM) proxyIncrementMetric(_ context.Context, _ api.Module, s []uint64) uint32 {
	idx, ok := vm.metricIDs[arg(s, 0)]
	if !ok || !vm.cfg.Stats.Add(idx, int64(s[1])) {
		return statusBadArgument
	}
	return statusOK
}

// proxy_record_metric(metric_id, value i64)
func (vm *VM) proxyRecordMetric(_ context.Context, _ api.Module, s []uint64) uint32 {
	idx, ok := vm.metricIDs[arg(s, 0)]
	if !ok || !vm.cfg.Stats.Record(idx, s[1]) {
		return statusBadArgument
	}
	return statusOK
}

// proxy_get_metric(metric_id, return_value)
func (vm *VM) proxyGetMetric(_ context.Context, mod api.Module, s []uint64) uint32 {
	idx, ok := vm.metricIDs[arg(s, 0)]
	if !ok {
		return statusNotFound
	}
	mod.Memory().WriteUint64Le(arg(s, 1), vm.cfg.Stats.Value(idx))
	return statusOK
}
