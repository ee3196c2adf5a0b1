package sandbox

import (
	"testing"
	"time"
)

// BenchmarkSearchPage is one page of 100 of a 100,000-resource search (the
// data set bench/syncs pages), as serveRead runs it: the page and the
// total, which walks every resource.
func BenchmarkSearchPage(b *testing.B) {
	f := fhirReads{count: 100000, origin: time.Now()}
	for b.Loop() {
		if idx, _, _, total := f.run(search{typ: "Patient", count: 100, after: 50000}); len(idx) != 100 || total != 100000 {
			b.Fatal(len(idx), total)
		}
	}
}
