package verifytest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
)

// Signatures that carry a transparency log entry or an RFC 3161 timestamp,
// made offline: a VirtualSigstore signs the entry's inclusion promise with
// its Rekor key and the timestamp with its TSA.

// annotationTimestamp is cosign's RFC 3161 timestamp annotation of a layer.
const annotationTimestamp = "dev.sigstore.cosign/rfc3161timestamp"

// Evidence is what a signature carries besides itself.
type Evidence struct {
	// Log makes a Rekor entry for the signature, its inclusion promise
	// signed (and, in a bundle, its inclusion proof made) by Log's Rekor
	// key. Nil: no entry.
	Log *ca.VirtualSigstore
	// TSA timestamps the signature. Nil: no timestamp.
	TSA *ca.VirtualSigstore
}

// SignKeyLegacy signs d with key in cosign's legacy layout (the payload
// layer with the signature annotation), with the Rekor bundle and the
// timestamp annotations that ev asks for.
func SignKeyLegacy(t testing.TB, key *ecdsa.PrivateKey, d name.Digest, ev Evidence) {
	t.Helper()
	payload := SimpleSigningPayload(d)
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{annotationSignature: base64.StdEncoding.EncodeToString(sig)}
	ev.annotate(t, ann, HashedRekord(t, sum[:], sig, publicKeyPEM(t, key)), time.Now().Unix(), 0, sig)
	WriteLegacySignature(t, d, payload, ann)
}

// annotate adds to a legacy layer's annotations the Rekor bundle of a log
// entry of body and the timestamp over signed that ev asks for.
func (ev Evidence) annotate(t testing.TB, ann map[string]string, body []byte, integratedTime, logIndex int64, signed []byte) {
	t.Helper()
	if ev.Log != nil {
		ann[annotationBundle] = RekorBundle(t, ev.Log, body, integratedTime, logIndex)
	}
	if ev.TSA != nil {
		ann[annotationTimestamp] = TimestampAnnotation(t, ev.TSA, signed)
	}
}

// SignKeyBundle signs d's manifest digest with key as a sigstore bundle (a
// message signature; the key is named by a hint only) attached as a
// referrer, with the Rekor entry and the timestamp that ev asks for.
func SignKeyBundle(t testing.TB, key *ecdsa.PrivateKey, d name.Digest, ev Evidence) {
	t.Helper()
	digest, err := hex.DecodeString(strings.TrimPrefix(d.DigestStr(), "sha256:"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest)
	if err != nil {
		t.Fatal(err)
	}
	vm := &protobundle.VerificationMaterial{
		Content:                   &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "release-key"}},
		TimestampVerificationData: &protobundle.TimestampVerificationData{},
	}
	if ev.Log != nil {
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{logEntry(t, ev.Log, HashedRekord(t, digest, sig, publicKeyPEM(t, key)))}
	}
	if ev.TSA != nil {
		tsr, err := ev.TSA.TimestampResponse(sig)
		if err != nil {
			t.Fatal(err)
		}
		vm.TimestampVerificationData.Rfc3161Timestamps = []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: tsr}}
	}
	pb := &protobundle.Bundle{
		MediaType:            bundleMediaType,
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: digest},
			Signature:     sig,
		}},
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	AttachBundle(t, d, d.Context(), raw)
}

// HashedRekord is the body of a Rekor hashedrekord entry: a SHA-256
// digest, the signature over it and the signer's PEM public key or
// certificate.
func HashedRekord(t testing.TB, digest, sig, signerPEM []byte) []byte {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"apiVersion": "0.0.1",
		"kind":       "hashedrekord",
		"spec": map[string]any{
			"data":      map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": hex.EncodeToString(digest)}},
			"signature": map[string]any{"content": sig, "publicKey": map[string]any{"content": signerPEM}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// RekorBundle is cosign's dev.sigstore.cosign/bundle annotation for a log
// entry of body in log's log: the payload and log's inclusion promise (SET)
// over it.
func RekorBundle(t testing.TB, log *ca.VirtualSigstore, body []byte, integratedTime, logIndex int64) string {
	t.Helper()
	logID, err := log.RekorLogID()
	if err != nil {
		t.Fatal(err)
	}
	rp := tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(body), IntegratedTime: integratedTime, LogIndex: logIndex, LogID: logID}
	set, err := log.RekorSignPayload(rp)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := json.Marshal(map[string]any{"SignedEntryTimestamp": set, "Payload": rp})
	if err != nil {
		t.Fatal(err)
	}
	return string(rb)
}

// logEntry is a bundle's log entry of body in log's log, with the inclusion
// promise and the inclusion proof (which v0.3 bundles need).
func logEntry(t testing.TB, log *ca.VirtualSigstore, body []byte) *protorekor.TransparencyLogEntry {
	t.Helper()
	proof, err := log.GetInclusionProof(body)
	if err != nil {
		t.Fatal(err)
	}
	logID, err := log.RekorLogID()
	if err != nil {
		t.Fatal(err)
	}
	rawID, err := hex.DecodeString(logID)
	if err != nil {
		t.Fatal(err)
	}
	index, integrated := *proof.LogIndex, time.Now().Unix()
	rp := tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(body), IntegratedTime: integrated, LogIndex: index, LogID: logID}
	set, err := log.RekorSignPayload(rp)
	if err != nil {
		t.Fatal(err)
	}
	rootHash, err := hex.DecodeString(*proof.RootHash)
	if err != nil {
		t.Fatal(err)
	}
	hashes := make([][]byte, len(proof.Hashes))
	for i, h := range proof.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			t.Fatal(err)
		}
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:          index,
		LogId:             &protocommon.LogId{KeyId: rawID},
		KindVersion:       &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.1"},
		IntegratedTime:    integrated,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: set},
		InclusionProof:    &protorekor.InclusionProof{LogIndex: index, RootHash: rootHash, TreeSize: *proof.TreeSize, Hashes: hashes, Checkpoint: &protorekor.Checkpoint{Envelope: *proof.Checkpoint}},
		CanonicalizedBody: body,
	}
}

// TimestampAnnotation is cosign's dev.sigstore.cosign/rfc3161timestamp
// annotation: tsa's RFC 3161 timestamp over signed.
func TimestampAnnotation(t testing.TB, tsa *ca.VirtualSigstore, signed []byte) string {
	t.Helper()
	tsr, err := tsa.TimestampResponse(signed)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(map[string][]byte{"SignedRFC3161Timestamp": tsr})
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func publicKeyPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	p, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteLegacySignature pushes a .sig manifest of d with one simple-signing
// layer carrying the annotations.
func WriteLegacySignature(t testing.TB, d name.Digest, payload []byte, annotations map[string]string, opts ...remote.Option) {
	t.Helper()
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:       static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"),
		Annotations: annotations,
	})
	if err != nil {
		t.Fatal(err)
	}
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatal(err)
	}
}
