package client_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/events"
)

func TestTokenReplyJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply client.TokenReply
		want  string
	}{
		{
			name: "token",
			reply: client.TokenReply{AccessToken: "tok", TokenType: "Bearer",
				ExpiresAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Generation: 7},
			want: `{"access_token":"tok","token_type":"Bearer","expires_at":"2026-03-01T10:00:00Z","generation":7}`,
		},
		{
			name:  "error",
			reply: client.TokenReply{Error: client.CodeRevoked, Message: "reconnect it"},
			want:  `{"error":"revoked","message":"reconnect it"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tt.reply)
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(got))
			var back client.TokenReply
			require.NoError(t, json.Unmarshal(got, &back))
			require.Equal(t, tt.reply, back)
		})
	}
}

func TestTokenReplyErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reply client.TokenReply
		want  error
	}{
		{client.TokenReply{AccessToken: "tok"}, nil},
		{client.TokenReply{Error: client.CodeNotFound, Message: "m"}, client.ErrNotFound},
		{client.TokenReply{Error: client.CodeRevoked, Message: "m"}, client.ErrRevoked},
		{client.TokenReply{Error: client.CodeExpired, Message: "m"}, client.ErrExpired},
		{client.TokenReply{Error: client.CodeUnavailable, Message: "m"}, client.ErrUnavailable},
		{client.TokenReply{Error: "overloaded", Message: "m"}, client.ErrUnavailable},
		{client.TokenReply{}, client.ErrUnavailable},
	}
	for _, tt := range tests {
		err := tt.reply.Err()
		if tt.want == nil {
			require.NoError(t, err)
			continue
		}
		require.ErrorIs(t, err, tt.want, "reply %+v", tt.reply)
		if tt.reply.Message != "" {
			require.Contains(t, err.Error(), tt.reply.Message)
		}
		for _, other := range []error{client.ErrNotFound, client.ErrRevoked, client.ErrExpired, client.ErrUnavailable} {
			if other != tt.want {
				require.False(t, errors.Is(err, other), "%v is also %v", err, other)
			}
		}
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	require.Equal(t, "token.get.halaxy-au.clinic-42", client.TokenSubject("", "halaxy-au", "clinic-42"))
	require.Equal(t, "acme.eu.token.get.halaxy-au.clinic-42", client.TokenSubject("acme.eu.", "halaxy-au", "clinic-42"))
	require.Equal(t, "acme."+events.NATSSubject(events.TypeTokenRenewed, "halaxy-au", "clinic-42"),
		client.RenewedSubject("acme.", "halaxy-au", "clinic-42"))
}

func TestCheckSubjectPrefix(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "acme.", "acme.eu.", "t0a1b2c3."} {
		require.NoError(t, client.CheckSubjectPrefix(ok), ok)
	}
	for _, bad := range []string{".", ".acme.", "acme..eu.", "acme.*.", "acme.>", "ac me."} {
		require.Error(t, client.CheckSubjectPrefix(bad), bad)
	}
}
