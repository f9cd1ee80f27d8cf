//go:build cgo

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopruner/gopruner/internal/broker"
	"github.com/gopruner/gopruner/internal/core/config"
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/pipeline"
	"github.com/gopruner/gopruner/internal/torchengine"
	"github.com/spf13/cobra"
)

// brokerKeys are the configuration keys of a broker connection.
var brokerKeys = []string{"broker", "broker_token", "broker_tls_cert", "broker_tls_key", "broker_tls_ca", "insecure",
	"broker_ack_wait", "broker_max_deliver"}

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) {
		root.AddCommand(newBrokerCmd(), newWorkerCmd())
	})
}

func newBrokerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run a NATS JetStream broker for my_pruning workers on several hosts (until interrupted)",
		Args:  cobra.NoArgs,
		RunE:  runBroker,
	}
	cmd.Flags().String("store", "", "directory of the broker's file store (streams and model archives survive restarts)")
	cmd.Flags().String("listen", "127.0.0.1:4222", "host:port to listen on; beyond loopback needs --broker-token")
	registerConfigFlags(cmd, "broker_token", "broker_tls_cert", "broker_tls_key", "broker_tls_ca", "log_level", "log_format")
	return cmd
}

func runBroker(cmd *cobra.Command, _ []string) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	store, _ := cmd.Flags().GetString("store")
	listen, _ := cmd.Flags().GetString("listen")
	if store == "" {
		return fail.Usagef("broker: --store DIR is required (the streams and archives live there)")
	}
	log, closeLog, err := newLogger(cfg, "")
	if err != nil {
		return err
	}
	defer closeLog()
	s, err := broker.StartServer(broker.ServerOptions{Listen: listen, StoreDir: store, Token: cfg.BrokerToken,
		TLSCert: cfg.BrokerTLSCert, TLSKey: cfg.BrokerTLSKey, TLSCA: cfg.BrokerTLSCA})
	if err != nil {
		return err
	}
	defer s.Close()
	log.Info().Str("url", s.URL).Str("store", store).Bool("token", cfg.BrokerToken != "").Msg("broker: listening")
	<-cmd.Context().Done()
	log.Info().Msg("broker: stopping")
	return nil
}

func newWorkerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run my_pruning candidates from a broker on this host's cart slots (until interrupted)",
		Args:  cobra.NoArgs,
		RunE:  runWorker,
	}
	cmd.Flags().String("data-root", ".", "directory holding the data sets; a task names one directory in it")
	registerConfigFlags(cmd, append([]string{"cart", "threads", "device", "seed", "nchw", "amp", "cudnn_benchmark", "output", "log_level", "log_format"}, brokerKeys...)...)
	return cmd
}

func runWorker(cmd *cobra.Command, _ []string) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	if cfg.Broker == "" || cfg.Broker == "direct" {
		return fail.Usagef("worker: --broker nats://host:4222 (or tls://) is required")
	}
	root, _ := cmd.Flags().GetString("data-root")
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return fail.Usagef("worker: --data-root %s is not a directory", root)
	}
	for _, s := range cfg.Cart {
		if _, err := usableDevice(string(s)); err != nil {
			return fmt.Errorf("cart: %w", err)
		}
	}
	if _, _, err := setupTorch(cfg); err != nil {
		return err
	}
	log, closeLog, err := newLogger(cfg, "")
	if err != nil {
		return err
	}
	defer closeLog()
	conn, err := broker.Connect(cmd.Context(), brokerConnect(cfg, "gopruner worker"))
	if err != nil {
		return err
	}
	defer conn.Close()
	// host:pid, so two workers on one host stay apart in results and logs.
	host, _ := os.Hostname()
	host = fmt.Sprintf("%s:%d", host, os.Getpid())
	slots := make([]string, len(cfg.Cart))
	for i, s := range cfg.Cart {
		slots[i] = string(s)
	}
	abs, _ := filepath.Abs(root)
	log.Info().Str("broker", cfg.Broker).Str("cart", strings.Join(slots, ",")).Str("data_root", abs).Msg("worker: serving")
	return pipeline.ServeWorker(cmd.Context(), conn, torchengine.Engine{}, pipeline.WorkerOptions{Slots: slots, Threads: cfg.Threads,
		DataRoot: root, Host: host, Version: version, Bridge: bridgeOf(cfg), Log: log})
}

// bridgeOf is the part of the bridge settings a worker must share with its
// coordinator (see configureBridge).
func bridgeOf(cfg *config.Config) broker.Bridge {
	return broker.Bridge{NCHW: cfg.NCHW, Output: cfg.Output, AMP: cfg.AMP}
}

// brokerConnect is the connection the configuration describes.
func brokerConnect(cfg *config.Config, name string) broker.ConnectOptions {
	return broker.ConnectOptions{URL: cfg.Broker, Token: cfg.BrokerToken, Insecure: cfg.Insecure,
		TLSCert: cfg.BrokerTLSCert, TLSKey: cfg.BrokerTLSKey, TLSCA: cfg.BrokerTLSCA, Name: name, Settings: brokerSettings(cfg)}
}

func brokerSettings(cfg *config.Config) broker.Settings {
	return broker.Settings{AckWait: secondsDuration(cfg.BrokerAckWait), MaxDeliver: cfg.BrokerMaxDeliver}
}

// brokerOptions is my_pruning's broker from the configuration.
func brokerOptions(cfg *config.Config) pipeline.BrokerOptions {
	o := pipeline.BrokerOptions{Direct: cfg.Broker == "direct", Version: version, Bridge: bridgeOf(cfg), Settings: brokerSettings(cfg)}
	if !o.Direct {
		c := brokerConnect(cfg, "")
		o.URL, o.Token, o.Insecure, o.TLSCert, o.TLSKey, o.TLSCA = c.URL, c.Token, c.Insecure, c.TLSCert, c.TLSKey, c.TLSCA
	}
	return o
}

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// checkBroker dials an external broker once before a prune writes
// anything, so that an unreachable one, a wrong token or a plaintext remote
// one is a one-line usage error with nothing left behind.
func checkBroker(ctx context.Context, cfg *config.Config) error {
	if cfg.Broker == "" || cfg.Broker == "direct" {
		return nil
	}
	conn, err := broker.Connect(ctx, brokerConnect(cfg, "gopruner check"))
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}
