// Package jobs holds tokenrelay's asynq task types, their payloads, queue
// names and handlers. It is where the other packages meet: the refresh
// handler uses a vendor adapter, the credential store and the event
// envelope, all handed to it in a Deps struct.
//
// Task type names are permanent: once shipped, never renamed.
package jobs
