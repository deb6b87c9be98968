package ramrod

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
)

// Status is part of a node's status (admin API).
type Status struct {
	ID          uint64  `json:"id"`
	Role        string  `json:"role"`
	Term        uint64  `json:"term"`
	Leader      *uint64 `json:"leader"`
	LastApplied *uint64 `json:"last_applied"`
	Keys        uint64  `json:"keys"`
	StateHash   string  `json:"state_hash"`
	Log         struct {
		FirstIndex uint64 `json:"first_index"`
		LastIndex  uint64 `json:"last_index"`
		Entries    uint64 `json:"entries"`
		Bytes      uint64 `json:"bytes"`
	} `json:"log"`
	CurrentSnapshot *struct {
		ID         string  `json:"id"`
		LastIndex  *uint64 `json:"last_index"`
		ChainBytes uint64  `json:"chain_bytes"`
	} `json:"current_snapshot"`
}

// Status is the status of the node the first endpoint reaches.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, u, err := c.do(ctx, request{method: http.MethodGet, path: "/admin/status", safe: true})
	if err != nil {
		return nil, err
	}
	var s Status
	if err := decodeJSON(resp, u, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Member is one member of the cluster.
type Member struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
}

// Members are the cluster's members as a node knows them.
type Members struct {
	Leader   *uint64  `json:"leader"`
	Voters   []Member `json:"voters"`
	Learners []Member `json:"learners"`
}

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) (*Members, error) {
	return c.members(ctx, request{method: http.MethodGet, path: "/admin/members", safe: true})
}

// AddMember adds node id at addr (host:port): a learner, then a voter.
func (c *Client) AddMember(ctx context.Context, id uint64, addr string) (*Members, error) {
	body, _ := json.Marshal(Member{ID: id, Addr: addr})
	return c.members(ctx, request{method: http.MethodPost, path: "/admin/members", body: bytes.Clone(body)})
}

// RemoveMember removes node id (the leader hands leadership over first).
func (c *Client) RemoveMember(ctx context.Context, id uint64) (*Members, error) {
	return c.members(ctx, request{method: http.MethodDelete, path: "/admin/members/" + strconv.FormatUint(id, 10)})
}

func (c *Client) members(ctx context.Context, req request) (*Members, error) {
	resp, u, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	var m Members
	if err := decodeJSON(resp, u, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
