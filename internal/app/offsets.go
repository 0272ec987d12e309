package app

import (
	"context"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/groupoffsets"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/relay"
)

// ShowOffsets runs `atrelay offsets show`: the group's committed offset,
// log, lag and owning member per partition, as a table or, with asJSON, as
// one JSON object; with parking on (delivery.park_after above 0), the
// parking consumer's too (group <group>.park on kafka.park_topic, which
// may not exist), after the table or under the object's "parking" key.
func ShowOffsets(ctx context.Context, cfg *config.Config, asJSON bool, w io.Writer) error {
	adm, closeAdm, err := admin(cfg)
	if err != nil {
		return err
	}
	defer closeAdm()
	st, err := groupoffsets.Show(ctx, adm, cfg.Kafka.Group, cfg.Kafka.Topic)
	if err != nil {
		return err
	}
	if cfg.Delivery.Relay.Parks() && cfg.Kafka.ParkTopic != "" {
		park, err := groupoffsets.ShowIfExists(ctx, adm, cfg.Kafka.Group+relay.ParkGroupSuffix, cfg.Kafka.ParkTopic)
		if err != nil {
			return fmt.Errorf("parking consumer: %w", err)
		}
		st.Parking = &park
	}
	if asJSON {
		return st.WriteJSON(w)
	}
	return st.WriteText(w)
}

// ResetOffsets runs `atrelay offsets reset`: it computes the group's new
// offsets with s and prints them; with export, it also writes them to that
// file (groupoffsets.WritePlanFile) before anything is committed; with
// execute, it commits them. It refuses while the group has members.
func ResetOffsets(ctx context.Context, cfg *config.Config, s groupoffsets.Strategy, export string, execute bool, w io.Writer) error {
	adm, closeAdm, err := admin(cfg)
	if err != nil {
		return err
	}
	defer closeAdm()
	rows, err := groupoffsets.Reset(ctx, adm, cfg.Kafka.Group, cfg.Kafka.Topic, s, false)
	if err != nil {
		return err
	}
	// Exported before the commit: the file says what was committed, or
	// would have been had the commit not failed.
	if export != "" {
		if err := groupoffsets.WritePlanFile(export, groupoffsets.PlanOf(cfg.Kafka.Group, cfg.Kafka.Topic, rows)); err != nil {
			return err
		}
	}
	if execute {
		if err := groupoffsets.Commit(ctx, adm, cfg.Kafka.Group, cfg.Kafka.Topic, rows); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "group %s, topic %s, %s\n", cfg.Kafka.Group, cfg.Kafka.Topic, s)
	groupoffsets.PrintPlan(w, rows)
	if export != "" {
		fmt.Fprintf(w, "plan written to %s\n", export)
	}
	if execute {
		fmt.Fprintf(w, "committed: group %s restarts from the new offsets\n", cfg.Kafka.Group)
	} else {
		fmt.Fprintln(w, "dry run: nothing committed; add --execute to apply")
	}
	return nil
}

// admin returns an admin client for cfg's cluster and what closes it.
func admin(cfg *config.Config) (*kadm.Client, func(), error) {
	kopts, err := kafkaconn.Options(cfg.Kafka)
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}
