package jobs_test

import (
	"encoding/json"
	"fmt"

	"github.com/tokenrelay/tokenrelay/jobs"
)

// A sync of every patient of a clinic changed since its last run, as a
// service sends it on sync.start.
func ExampleNewSync() {
	s := jobs.NewSync("clinic-42", "Patient", jobs.SyncIncremental)
	s.ID = "nightly-42"
	s.Query = jobs.Query{"_count": {"100"}}
	raw, _ := json.Marshal(s)
	fmt.Println(string(raw), s.Check())
	// Output: {"id":"nightly-42","credential":"clinic-42","resource":"Patient","query":{"_count":["100"]},"mode":"incremental"} <nil>
}
