// Package profile writes the CPU and allocation profiles the benchmarks
// take on request (go tool pprof reads them).
package profile

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// StartCPU starts a CPU profile written to path ("" for none) and returns
// what stops it.
func StartCPU(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// WriteAllocs writes the allocation profile so far to path, after a GC
// (two of them, before and after a run, give the run's own allocations
// with go tool pprof -base).
func WriteAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	return nil
}
