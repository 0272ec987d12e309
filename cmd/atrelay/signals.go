package main

import (
	"os"
	"time"
)

// sameSignal is how soon after the first a signal counts as the same
// request to stop: `timeout`, `docker stop` and a terminal's Ctrl-C may
// deliver one request to the process and again to its process group.
const sameSignal = time.Second

// watchSignals turns signals into a shutdown. The first calls stop (a
// graceful shutdown); those within sameSignal of it are the same request;
// a later one calls exit(130), since the operator insists. It returns when
// sigs is closed or after calling exit.
func watchSignals(sigs <-chan os.Signal, stop func(), exit func(code int)) {
	if _, ok := <-sigs; !ok {
		return
	}
	first := time.Now()
	stop()
	for range sigs {
		if time.Since(first) > sameSignal {
			exit(130)
			return
		}
	}
}
