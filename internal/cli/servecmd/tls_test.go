package servecmd_test

// TLS for serve, and the client's refusal to send credentials over plain
// HTTP to another machine (issue 8, deliverable 6), through the real
// binary.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate for 127.0.0.1, ::1 and
// localhost, and its key, as PEM files; it returns their paths.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "seren test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestServeTLS(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "tls")
	srv := startServe(t, dataDir, "--tls-cert", certFile, "--tls-key", keyFile,
		"--read-timeout", "1s", "--write-timeout", "2s", "--worker-binary", sleepWorker(t), "--max-concurrent-jobs", "1")
	if !strings.HasPrefix(srv.url, "https://127.0.0.1:") {
		t.Fatalf("serve printed %s, want an https:// URL", srv.url)
	}
	ctx := context.Background()
	env := []string{"SEREN_API_KEY=" + key, "SEREN_REMOTE_API=" + srv.url}

	// A client that trusts the certificate (SSL_CERT_FILE, read by Go's
	// crypto/x509 on Linux and BSD) gets through.
	r := runBin(t, ctx, append(env, "SSL_CERT_FILE="+certFile), "jobs", "list", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"jobs"`) {
		t.Fatalf("jobs list over TLS with the certificate trusted: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// One that does not, does not.
	r = runBin(t, ctx, append(env, "SSL_CERT_FILE="+filepath.Join(t.TempDir(), "none.pem")), "jobs", "list")
	if r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("jobs list with an untrusted certificate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Plain HTTP to the TLS port is answered 400 by Go's server, never
	// served.
	plain := strings.Replace(srv.url, "https://", "http://", 1)
	code, _ := call(t, clientFrom("127.0.0.1"), "GET", plain+"/jobs", key, "")
	if code != 400 {
		t.Fatalf("plain HTTP to the TLS port: %d, want 400", code)
	}

	// A followed log over HTTP/2 outlives the server's timeouts too.
	pool := x509.NewCertPool()
	certPEM, err := os.ReadFile(certFile)
	if err != nil || !pool.AppendCertsFromPEM(certPEM) {
		t.Fatalf("read %s: %v", certFile, err)
	}
	h2 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := h2.Get(srv.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("health over TLS answered with %s, want HTTP/2", resp.Proto)
	}
	followOutlivesTimeouts(t, h2, srv.url, key)
}

// nonLoopbackIP is an address of this machine that is not loopback.
func nonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}

func TestClientRefusesPlainHTTPToAnotherHost(t *testing.T) {
	ip := nonLoopbackIP(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "plain")
	srv := startServe(t, dataDir, "--listen", ip+":0")
	if !strings.HasPrefix(srv.url, "http://"+ip+":") {
		t.Fatalf("serve printed %s", srv.url)
	}
	ctx := context.Background()
	env := []string{"SEREN_API_KEY=" + key, "SEREN_REMOTE_API=" + srv.url, "SEREN_INSECURE_HTTP="}
	submit := []string{"init", "--yes", "--no-sync",
		"--source", "postgresql://app:source-pw@source.example.com:5432/postgres",
		"--target", "postgresql://app:target-pw@target.example.com:5432/postgres"}

	for _, args := range [][]string{{"jobs", "list"}, submit} {
		r := runBin(t, ctx, env, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "plain HTTP") || !strings.Contains(r.stderr, "--insecure-http") {
			t.Fatalf("%s over plain HTTP to %s: %d\n%s%s", args[0], ip, r.code, r.stdout, r.stderr)
		}
	}
	if log := readFile(t, srv.logPath); strings.Contains(log, "http request") {
		t.Fatalf("the refused client still reached serve:\n%s", log)
	}

	// The user may say so, by flag or environment...
	if r := runBin(t, ctx, env, "jobs", "list", "--insecure-http"); r.code != 0 {
		t.Fatalf("jobs list --insecure-http: %d\n%s", r.code, r.stderr)
	}
	if r := runBin(t, ctx, append(env, "SEREN_INSECURE_HTTP=1"), "jobs", "list"); r.code != 0 {
		t.Fatalf("jobs list with SEREN_INSECURE_HTTP=1: %d\n%s", r.code, r.stderr)
	}
	// ...and loopback needs nothing.
	localDir := filepath.Join(t.TempDir(), "data")
	localKey := createKey(t, localDir, "local")
	local := startServe(t, localDir)
	if r := runBin(t, ctx, []string{"SEREN_API_KEY=" + localKey, "SEREN_REMOTE_API=" + local.url, "SEREN_INSECURE_HTTP="}, "jobs", "list"); r.code != 0 {
		t.Fatalf("jobs list over loopback http: %d\n%s", r.code, r.stderr)
	}
}
