package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/gopruner/gopruner/internal/core/fail"
)

// ServerOptions configure an embedded JetStream server.
type ServerOptions struct {
	// Listen is host:port; "" is 127.0.0.1 on a free port. Port 0 picks a
	// free port too.
	Listen string
	// StoreDir holds the file store (streams and archives survive a restart).
	StoreDir string
	// Token is the client token; a server listening beyond loopback must
	// have one (or TLS with client certificates).
	Token string
	// TLSCert, TLSKey serve TLS; TLSCA also verifies client certificates.
	TLSCert, TLSKey, TLSCA string
}

// Server is a running embedded JetStream server.
type Server struct {
	s     *server.Server
	URL   string // what clients dial (nats:// or tls://)
	Token string
}

// NewToken is a random token for a server only this process talks to.
func NewToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b)
}

// StartServer starts an embedded JetStream server. A server that listens on
// anything but loopback without a token or client certificates is a usage
// error: it would run whatever task anyone on the network sends.
func StartServer(o ServerOptions) (*Server, error) {
	host, port := "127.0.0.1", -1
	if o.Listen != "" {
		h, p, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fail.Usagef("--listen %q: %v", o.Listen, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return nil, fail.Usagef("--listen %q: port %q is not a number in 0..65535", o.Listen, p)
		}
		host = h
		if host == "" {
			host = "0.0.0.0"
		}
		if n != 0 {
			port = n
		}
	}
	if !isLoopback(host) && o.Token == "" && o.TLSCA == "" {
		return nil, fail.Usagef("--listen %s: a broker listening beyond loopback needs --broker-token (or client certificates with --broker-tls-ca)", o.Listen)
	}
	if o.StoreDir == "" {
		return nil, fail.Usagef("broker: no store directory")
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fail.Usagef("broker store %s: %v", o.StoreDir, err)
	}
	opts := &server.Options{Host: host, Port: port, JetStream: true, StoreDir: o.StoreDir,
		Authorization: o.Token, NoSigs: true, NoLog: true, MaxPayload: 8 << 20}
	scheme := "nats"
	if o.TLSCert != "" || o.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey, CaFile: o.TLSCA, Verify: o.TLSCA != ""})
		if err != nil {
			return nil, fail.Usagef("--broker-tls-cert/key/ca: %v", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSVerify = tc, true, o.TLSCA != ""
		scheme = "tls"
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("broker: the embedded server did not start within 30 s (is the port taken?)")
	}
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		s.Shutdown()
		return nil, errors.New("broker: the embedded server has no TCP address")
	}
	dial := host
	if dial == "0.0.0.0" || dial == "::" {
		dial = "127.0.0.1"
	}
	return &Server{s: s, URL: fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(dial, strconv.Itoa(addr.Port))), Token: o.Token}, nil
}

// Close stops the server and waits until its store is flushed.
func (s *Server) Close() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
