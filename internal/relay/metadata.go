package relay

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/internal/relay/offsets"
)

// The settled set in the commit metadata (issue 14, point 4): each commit
// carries, per partition, the offsets above the committed one that are
// already settled (offsets.EncodeMetadata); whoever is assigned the
// partition next, another member or this process after a crash, reads it
// with the committed offset (offsetsFetched) and settles those records at
// once, as already_settled, instead of sending them again. After a crash or
// a rebalance, only the records settled since the last commit are sent
// twice, even while one site holds the committed offset back.

// maxMetadataCuts is how many times the budget may be halved after the
// brokers refused a commit's metadata as too large: 4000 bytes halved 12
// times leaves less than the prefix, and commits carry no metadata.
const maxMetadataCuts = 12

// offsetsFetched, the client's kgo.OnOffsetsFetched hook, runs once the
// committed offsets of newly assigned partitions are fetched, before any of
// their records is: it hands each partition's settled set, decoded from its
// commit metadata, to the partition's tracker (offsets.Book.Restore).
// Metadata written by another tool (franz-go writes the member id by
// default) or malformed is ignored, with a DEBUG line: it only means that
// nothing is known settled above the committed offset. It also checks the
// committed offsets against the log start (checkGaps).
func (r *Relay) offsetsFetched(ctx context.Context, cl *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	var assigned []int32
	committed := make(map[int32]int64)
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			topic := t.Topic
			if topic == "" {
				// OffsetFetch v10 names topics by id only; the relay
				// consumes one topic, so the only topic is it.
				topic = r.cfg.Topic
			}
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					continue // the client reports it as a fetch error
				}
				if topic == r.cfg.Topic {
					assigned = append(assigned, p.Partition)
				}
				if p.Offset < 0 {
					continue // no commit: nothing above it either
				}
				if topic == r.cfg.Topic {
					committed[p.Partition] = p.Offset
				}
				md := ""
				if p.Metadata != nil {
					md = *p.Metadata
				}
				r.restoreSettled(topic, p.Partition, p.Offset, md)
			}
		}
	}
	r.checkGaps(ctx, cl, assigned, committed)
	return nil
}

// restoreSettled decodes one partition's commit metadata and hands what it
// records to the partition's tracker.
func (r *Relay) restoreSettled(topic string, partition int32, committed int64, md string) {
	s, err := offsets.DecodeMetadata(committed, md)
	switch {
	case errors.Is(err, offsets.ErrForeignMetadata):
		r.log.Debug("commit metadata not written by atrelay: ignored, nothing is known settled above the committed offset",
			"topic", topic, "partition", partition, "committed", committed, "metadata", md)
		return
	case err != nil:
		r.log.Debug("malformed commit metadata: ignored, nothing is known settled above the committed offset",
			"topic", topic, "partition", partition, "committed", committed, "error", err)
		return
	case s == nil:
		return
	}
	if r.book.Restore(topic, partition, s) {
		r.log.Info("records above the committed offset were settled by the partition's previous owner: they are not sent again",
			"topic", topic, "partition", partition, "committed", committed, "records", s.Count())
	}
}

// withMetadata returns ctx carrying the pre-commit function that sets each
// partition's commit metadata to its offset's (offsets.Offset.Metadata),
// cut to the budget the brokers accept (noteMetadataRefused).
func (r *Relay) withMetadata(ctx context.Context, pending map[string]map[int32]offsets.Offset) context.Context {
	budget := offsets.MetadataBudget >> min(r.metadataCuts.Load(), maxMetadataCuts)
	return kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				p := &t.Partitions[j]
				if o, ok := pending[t.Topic][p.Partition]; ok {
					md := offsets.CutMetadata(o.Metadata, budget)
					p.Metadata = &md
				}
			}
		}
		return nil
	})
}

// cutMetadata halves the metadata budget after the brokers refused a
// commit for its metadata's size (kerr.OffsetMetadataTooLarge: their
// offset.metadata.max.bytes is below offsets.MetadataBudget). The refused
// partitions are committed again at the next commit_interval, with less.
func (r *Relay) cutMetadata() {
	cuts := r.metadataCuts.Add(1)
	r.log.Warn("the brokers refuse the commit metadata as too large (offset.metadata.max.bytes); committing again with less: fewer settled records are remembered across a restart",
		"budget_bytes", offsets.MetadataBudget>>min(cuts, maxMetadataCuts))
}
