//go:build kms_vault || kms_all

package masterkey

// Links the hashivault:// KMS driver (build with -tags kms_vault or kms_all).
import _ "gocloud.dev/secrets/hashivault"
