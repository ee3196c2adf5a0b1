// Package masterkey builds the keyring that seals secrets at rest (package
// seal) from the configured master keys: the current key and the previous
// ones (kept to open what they sealed until the re-seal has sealed it again
// under the current key), each given plain in the environment or wrapped by
// a KMS.
//
// With a KMS (envelope encryption), the master key is a data key of 32
// random bytes that the KMS encrypted ("wrapped"); the process holds only
// the wrapped key and asks the KMS to unwrap it at start, through
// gocloud.dev/secrets. Who can read the process environment, a manifest or
// a backup learns nothing without the right to use the KMS key.
//
// The KMS drivers are linked by build tags, so that a binary carries only
// the cloud SDK it needs: localsecrets ("base64key://", for development and
// tests) always; awskms with -tags kms_aws, gcpkms with kms_gcp,
// azurekeyvault with kms_azure, hashivault with kms_vault (kms_all: every
// one). See docs/keys.md.
package masterkey
