package app

import (
	"context"
	"io"

	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/dlqreplay"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// dlqFormat is how sinks/dlq marks a dead-letter record, for dlqreplay.
var dlqFormat = dlqreplay.Format{
	SourceTopic:     dlq.HeaderTopic,
	SourcePartition: dlq.HeaderPartition,
	SourceOffset:    dlq.HeaderOffset,
	Reason:          dlq.HeaderReason,
	OriginalReason:  dlq.HeaderOriginalReason,
	Prefix:          "atrelay.", // every dlq.Header* starts with it
	PointerReason:   dlq.ReasonTooLarge,
}

// Replay runs `atrelay dlq replay`: it reads cfg's dead-letter topic
// (kafka.dlq_topic) with a consumer outside the service's group, selects
// records as o says (its Topic and Format are set here), prints each and
// the counts by reason, and with o.Execute puts the replayable ones back on
// their source topic. The output is printed even when producing failed.
func Replay(ctx context.Context, cfg *config.Config, o dlqreplay.Options, w io.Writer) error {
	kopts, err := kafkaconn.Options(cfg.Kafka)
	if err != nil {
		return err
	}
	o.Topic, o.Format = cfg.Kafka.DLQTopic, dlqFormat
	res, err := dlqreplay.Run(ctx, kopts, o)
	if res != nil {
		if werr := res.WriteText(w); err == nil {
			err = werr
		}
	}
	return err
}
