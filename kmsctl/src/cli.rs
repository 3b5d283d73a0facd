//! The command line: `kmsctl [GLOBAL FLAGS] GROUP VERB [ARGS]`.
//!
//! Groups are nouns (`key`, `alias`, `version`, `keypair`, `datakey`, `secret`), verbs are what
//! happens to them; the data plane's single-verb operations are top level (`encrypt`,
//! `decrypt`, `random`, `hash`). Keys are named as the API names them: a key ID
//! (`key-...`) or an alias (`alias/...`), always the first positional argument.
//!
//! Every operation of the server's catalogue ([`kmsd_api::ops::Operation`]) is one command
//! (or one command with a flag, e.g. `--advance`); [`Command::operation`] says which,
//! and [`COMMAND_TABLE`] lists them for `kmsctl operations` and for the test that no
//! operation is left without a command. Adding an operation: a variant here, its arm in
//! [`Command::operation`], a line in [`COMMAND_TABLE`], and its handler in
//! `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kmsd_api::ops::Operation;

use crate::connect::ConnectOptions;
use crate::failure::EXIT_CODES_HELP;
use crate::output::OutputFormat;
use crate::retry::TokenArgs;

/// kmsctl: drive kmsd from the command line.
#[derive(Debug, Parser)]
#[command(
    name = "kmsctl",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KMSD_GIT_COMMIT"), ")"),
    about = "kmsctl: the operator command line of kmsd",
    long_about = "kmsctl: the operator command line of kmsd.\n\n\
        Keys are named by key ID (key-...) or alias (alias/...). Binary data is read from \
        and written to files (private and secret files with mode 0600); `-` means \
        stdin/stdout, never a terminal. The bearer token comes from KMSCTL_TOKEN or \
        --token-file, never from a flag.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Where and how to connect.
    #[command(flatten)]
    pub connect: ConnectOptions,

    /// Output format: text for people, json for scripts.
    #[arg(
        long,
        short = 'o',
        global = true,
        env = "KMSCTL_OUTPUT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub output: OutputFormat,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// A top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Master keys: create, describe, list, enable, disable, rotate, delete.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Aliases: names for keys.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Key versions.
    #[command(subcommand)]
    Version(VersionCommand),
    /// Data key pairs sealed under a master key.
    #[command(subcommand)]
    Keypair(KeypairCommand),
    /// Data keys sealed under a master key.
    #[command(subcommand)]
    Datakey(DatakeyCommand),
    /// Encrypt up to 6 KiB under a master key into a ciphertext file.
    Encrypt(EncryptArgs),
    /// Open a ciphertext file (from encrypt, datakey or keypair generate).
    Decrypt(DecryptArgs),
    /// Random bytes from the server, into a file.
    Random(RandomArgs),
    /// A digest computed by the server.
    Hash(HashArgs),
    /// Sign a file (or its SHA-256 digest) with an asymmetric key; the signature into a file.
    Sign(SignArgs),
    /// Check a signature of a file with an asymmetric key (kmsd's Verify).
    Verify(VerifyArgs),
    /// An asymmetric key's public key, PEM (GetPublicKey).
    PublicKey(PublicKeyArgs),
    /// HMAC-SHA256 of a file under an HMAC_SHA256 key.
    Hmac(HmacArgs),
    /// Stream a consistent backup of the server's embedded store into a file (Backup).
    Backup(BackupArgs),
    /// Client keys of the HTTPS gateway: the official SDKs' credentials.
    #[command(subcommand)]
    ClientKey(ClientKeyCommand),
    /// Secrets: values (passwords, tokens) sealed under a master key, with versions
    /// and stages. Values come from files or stdin, never from arguments.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// List every server operation and the kmsctl command that calls it.
    Operations,
}

/// `kmsctl key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key (CreateKey).
    Create(KeyCreateArgs),
    /// Show a key (DescribeKey).
    Describe(KeyArg),
    /// List keys, all pages (ListKeys).
    List(PageArgs),
    /// Enable a disabled key (EnableKey).
    Enable(KeyArg),
    /// Disable a key: it seals and opens nothing until enabled (DisableKey).
    Disable(KeyArg),
    /// Destroy a key after a waiting period (ScheduleKeyDeletion).
    ScheduleDeletion(ScheduleDeletionArgs),
    /// Take a key out of PendingDeletion (CancelKeyDeletion).
    CancelDeletion(KeyArg),
    /// Rotate: add a version and make it primary (CreateKeyVersion).
    Rotate(KeyRotateArgs),
    /// Turn automatic rotation on or off (UpdateRotationPolicy).
    RotationPolicy(RotationPolicyArgs),
}

/// `kmsctl client-key ...`
#[derive(Debug, Subcommand)]
pub enum ClientKeyCommand {
    /// Create a client key and write the SDK's client key file (CreateClientKey). The
    /// PKCS#12 password is read from a file (never a flag).
    Create(ClientKeyCreateArgs),
    /// List client keys, all pages (ListClientKeys).
    List(PageArgs),
    /// Delete a client key: requests signed with it are refused (DeleteClientKey).
    Delete(ClientKeyArg),
}

/// `client-key create`
#[derive(Debug, Args)]
pub struct ClientKeyCreateArgs {
    /// The principal the key acts as.
    #[arg(long)]
    pub principal: String,
    /// A file holding the PKCS#12 password (its first line; `-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,
    /// Where to write the SDK's client key file, `{"KeyId", "PrivateKeyData"}` (mode
    /// 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Valid from (RFC 3339); now when unset.
    #[arg(long, default_value = "")]
    pub not_before: String,
    /// Valid until (RFC 3339); a year after --not-before when unset.
    #[arg(long, default_value = "")]
    pub not_after: String,
    /// The idempotency token; a run again with it is refused, naming the key it made
    /// (the private key is returned once).
    #[command(flatten)]
    pub once: TokenArgs,
}

/// A client key, by ID.
#[derive(Debug, Args)]
pub struct ClientKeyArg {
    /// The client key ID (KAAP....).
    pub client_key_id: String,
}

/// `kmsctl secret ...`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret with its first value, ACSCurrent (CreateSecret).
    Create(SecretCreateArgs),
    /// Add a version (PutSecretValue): ACSCurrent unless --stage names others.
    Put(SecretPutArgs),
    /// Write a version's value to a file, or with --stdout to stdout (GetSecretValue).
    Get(SecretGetArgs),
    /// Show a secret (DescribeSecret).
    Describe(SecretArg),
    /// List secrets, all pages (ListSecrets).
    List(SecretListArgs),
    /// List a secret's versions and their stages (ListSecretVersionIds).
    Versions(SecretVersionsArgs),
    /// Set a secret's description and/or ExtendedConfig (UpdateSecret).
    Update(SecretUpdateArgs),
    /// Move a stage between versions (UpdateSecretVersionStage).
    Stage(SecretStageArgs),
    /// Turn automatic rotation on or off (UpdateSecretRotationPolicy).
    RotationPolicy(SecretRotationArgs),
    /// Schedule the deletion after a recovery window, or --force it now (DeleteSecret).
    Delete(SecretDeleteArgs),
    /// Cancel a scheduled deletion (RestoreSecret).
    Restore(SecretArg),
}

/// A secret, by name.
#[derive(Debug, Args)]
pub struct SecretArg {
    /// The secret name.
    pub secret_name: String,
}

/// Where a secret value is read from.
#[derive(Debug, Args)]
pub struct SecretValueIn {
    /// The file holding the value (`-` for stdin).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// The value is bytes (sent in base64, SecretDataType binary), not UTF-8 text.
    #[arg(long)]
    pub binary: bool,
}

/// `secret create`
#[derive(Debug, Args)]
pub struct SecretCreateArgs {
    /// The secret name: 1 to 192 of A-Z a-z 0-9 / _ + = . @ -
    pub secret_name: String,
    /// The first value.
    #[command(flatten)]
    pub value: SecretValueIn,
    /// The first version's ID; generated when unset.
    #[arg(long, default_value = "")]
    pub version_id: String,
    /// The master key (key ID or alias); kmsd's default secrets key when unset.
    #[arg(long, value_name = "KEY", default_value = "")]
    pub key: String,
    /// Free text.
    #[arg(long, default_value = "")]
    pub description: String,
    /// A JSON object kept with the secret (GetSecretValue returns it when asked).
    #[arg(long, value_name = "JSON", default_value = "")]
    pub extended_config: String,
    /// Turn automatic rotation on with this interval (e.g. 7d, 168h, 604800s).
    #[arg(long, value_name = "INTERVAL")]
    pub rotate_every: Option<String>,
    /// The idempotency token.
    #[command(flatten)]
    pub once: TokenArgs,
}

/// `secret put`
#[derive(Debug, Args)]
pub struct SecretPutArgs {
    /// The secret name.
    pub secret_name: String,
    /// The new version's ID.
    #[arg(long)]
    pub version_id: String,
    /// The value.
    #[command(flatten)]
    pub value: SecretValueIn,
    /// A stage for the new version (repeat for several); ACSCurrent when none.
    #[arg(long = "stage", value_name = "STAGE")]
    pub stages: Vec<String>,
}

/// `secret get`
#[derive(Debug, Args)]
pub struct SecretGetArgs {
    /// The secret name.
    pub secret_name: String,
    /// The version with this stage (ACSCurrent when neither this nor --version-id).
    #[arg(long, default_value = "")]
    pub stage: String,
    /// The version with this ID.
    #[arg(long, default_value = "")]
    pub version_id: String,
    /// Where to write the value (mode 0600; binary values decoded).
    #[arg(long, value_name = "FILE", required_unless_present = "stdout")]
    pub out: Option<PathBuf>,
    /// Write the value to stdout instead (never to a terminal).
    #[arg(long, conflicts_with = "out")]
    pub stdout: bool,
    /// Also show the secret's ExtendedConfig.
    #[arg(long)]
    pub extended_config: bool,
}

/// `secret list`
#[derive(Debug, Args)]
pub struct SecretListArgs {
    /// Only secrets whose names start with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
}

/// `secret versions`
#[derive(Debug, Args)]
pub struct SecretVersionsArgs {
    /// The secret name.
    pub secret_name: String,
    /// Also the versions without a stage.
    #[arg(long)]
    pub all: bool,
}

/// `secret update`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["description", "extended_config"])))]
pub struct SecretUpdateArgs {
    /// The secret name.
    pub secret_name: String,
    /// The new description.
    #[arg(long)]
    pub description: Option<String>,
    /// The new ExtendedConfig (a JSON object).
    #[arg(long, value_name = "JSON")]
    pub extended_config: Option<String>,
}

/// `secret stage`
#[derive(Debug, Args)]
pub struct SecretStageArgs {
    /// The secret name.
    pub secret_name: String,
    /// The stage to move.
    pub stage: String,
    /// The version that has it now.
    #[arg(long, value_name = "VERSION", default_value = "")]
    pub from: String,
    /// The version to give it to.
    #[arg(long, value_name = "VERSION", default_value = "")]
    pub to: String,
}

/// `secret rotation-policy`
#[derive(Debug, Args)]
pub struct SecretRotationArgs {
    /// The secret name.
    pub secret_name: String,
    /// Turn automatic rotation on with this interval (e.g. 30d).
    #[arg(long, value_name = "INTERVAL", conflicts_with = "off")]
    pub every: Option<String>,
    /// Turn automatic rotation off.
    #[arg(long, required_unless_present = "every")]
    pub off: bool,
}

/// `secret delete`
#[derive(Debug, Args)]
pub struct SecretDeleteArgs {
    /// The secret name.
    pub secret_name: String,
    /// The recovery window, 7 to 30 days (30 when unset).
    #[arg(long, conflicts_with = "force")]
    pub days: Option<i32>,
    /// Delete at once, every version, without recovery.
    #[arg(long)]
    pub force: bool,
}

/// `kmsctl alias ...`
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Name a key (CreateAlias).
    Create(AliasKeyArgs),
    /// Point an alias at another key (UpdateAlias).
    Update(AliasKeyArgs),
    /// Delete an alias; the key stays (DeleteAlias).
    Delete(AliasArg),
    /// List aliases, all pages, or those of one key (ListAliases).
    List(AliasListArgs),
}

/// `kmsctl version ...`
#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// List a key's versions, oldest first (ListKeyVersions).
    List(KeyArg),
    /// Show one version (DescribeKeyVersion).
    Describe(VersionArgs),
}

/// `kmsctl keypair ...`
#[derive(Debug, Subcommand)]
pub enum KeypairCommand {
    /// Generate a key pair: the public key and the sealed private key to files
    /// (GenerateDataKeyPair[WithoutPlaintext], Advance with --advance).
    Generate(KeypairGenerateArgs),
}

/// `kmsctl datakey ...`
#[derive(Debug, Subcommand)]
pub enum DatakeyCommand {
    /// Generate a data key: the plaintext key and its ciphertext to files
    /// (GenerateDataKey, AdvanceGenerateDataKey with --advance).
    Generate(DatakeyGenerateArgs),
}

/// A key, by ID or alias.
#[derive(Debug, Args)]
pub struct KeyArg {
    /// Key ID (key-...) or alias (alias/...).
    pub key: String,
}

/// `key create`
#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// What the key is for.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Key spec; the server's default (Aliyun_AES_256) when unset. Also RSA_2048,
    /// RSA_3072, EC_P256, EC_P256K, ML_DSA_44, ML_DSA_65, ML_DSA_87, ED25519 (SIGN/VERIFY)
    /// and HMAC_SHA256.
    #[arg(long, default_value = "")]
    pub spec: String,
    /// Key usage; the spec's default when unset (ENCRYPT/DECRYPT for AES, SIGN/VERIFY for
    /// RSA). `--spec RSA_2048 --usage ENCRYPT/DECRYPT` makes an RSA encryption key
    /// (encrypt/decrypt with `--algorithm RSAES_OAEP_SHA_256`).
    #[arg(long, default_value = "")]
    pub usage: String,
    /// Protection level; the server's default (SOFTWARE) when unset.
    #[arg(long, default_value = "")]
    pub protection_level: String,
    /// Turn automatic rotation on, at this interval (7 to 365 days, e.g. `30d`).
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<humantime::Duration>,
    /// The idempotency token.
    #[command(flatten)]
    pub once: TokenArgs,
}

/// `key rotate`
#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// Key ID (key-...) or alias (alias/...).
    pub key: String,
    /// The idempotency token.
    #[command(flatten)]
    pub once: TokenArgs,
}

/// Paging of a list.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// Entries per call (1 to 100); every page is fetched.
    #[arg(long, default_value = "100")]
    pub page_size: i32,
}

/// `key schedule-deletion`
#[derive(Debug, Args)]
pub struct ScheduleDeletionArgs {
    /// Key ID or alias.
    pub key: String,
    /// Days until the key is destroyed (7 to 366).
    #[arg(long)]
    pub days: i32,
}

/// `key rotation-policy`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("policy").required(true).args(["every", "off"])))]
pub struct RotationPolicyArgs {
    /// Key ID or alias.
    pub key: String,
    /// Rotate automatically at this interval (7 to 365 days, e.g. `90d`).
    #[arg(long, value_name = "DURATION")]
    pub every: Option<humantime::Duration>,
    /// Turn automatic rotation off.
    #[arg(long)]
    pub off: bool,
}

/// An alias and a key.
#[derive(Debug, Args)]
pub struct AliasKeyArgs {
    /// The alias: alias/ and 1 to 255 of [a-zA-Z0-9:/_-].
    pub alias: String,
    /// Key ID or alias of the key it names.
    pub key: String,
}

/// An alias.
#[derive(Debug, Args)]
pub struct AliasArg {
    /// The alias.
    pub alias: String,
}

/// `alias list`
#[derive(Debug, Args)]
pub struct AliasListArgs {
    /// Only the aliases of this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Entries per call (1 to 100); every page is fetched.
    #[arg(long, default_value = "100")]
    pub page_size: i32,
}

/// `version describe`
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Key ID or alias.
    pub key: String,
    /// The version ID.
    pub version: String,
}

/// `keypair generate`
#[derive(Debug, Args)]
pub struct KeypairGenerateArgs {
    /// Key ID or alias of the master key that seals the private key.
    pub key: String,
    /// RSA_2048, RSA_3072, RSA_4096, EC_P256 or EC_P256K.
    #[arg(long, default_value = "EC_P256")]
    pub spec: String,
    /// PEM or DER.
    #[arg(long, default_value = "PEM")]
    pub format: String,
    /// Where to write the public key.
    #[arg(long, value_name = "FILE")]
    pub public_out: PathBuf,
    /// Where to write the sealed private key (a ciphertext file; `kmsctl decrypt` opens
    /// it).
    #[arg(long, value_name = "FILE")]
    pub private_out: PathBuf,
    /// Also write the PLAINTEXT private key here (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub plaintext_private_out: Option<PathBuf>,
    /// Additional authenticated data, needed again to open the private key.
    #[arg(long, default_value = "")]
    pub aad: String,
    /// Seal under the key's newest version (the Advance operations).
    #[arg(long)]
    pub advance: bool,
}

/// `datakey generate`
#[derive(Debug, Args)]
pub struct DatakeyGenerateArgs {
    /// Key ID or alias of the master key.
    pub key: String,
    /// Length of the data key in bytes (1 to 1024).
    #[arg(long, default_value = "32")]
    pub bytes: i32,
    /// Where to write the PLAINTEXT data key (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub plaintext_out: PathBuf,
    /// Where to write the data key's ciphertext file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Additional authenticated data, needed again to open the ciphertext.
    #[arg(long, default_value = "")]
    pub aad: String,
    /// Seal under the key's newest version (AdvanceGenerateDataKey).
    #[arg(long)]
    pub advance: bool,
}

/// `encrypt`
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Key ID or alias.
    pub key: String,
    /// The plaintext (`-` for stdin), up to 6 KiB.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the ciphertext file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Additional authenticated data, needed again to decrypt.
    #[arg(long, default_value = "")]
    pub aad: String,
    /// Seal under the key's newest version (AdvanceEncrypt).
    #[arg(long)]
    pub advance: bool,
    /// For an RSA encryption key: RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1 (the plaintext
    /// then fits in 190 or 214 bytes for RSA_2048, 318 or 342 for RSA_3072). The file
    /// records it for `decrypt`. AES keys: unset (AES_GCM).
    #[arg(long, default_value = "")]
    pub algorithm: String,
}

/// `decrypt`
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The ciphertext file (`-` for stdin).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the PLAINTEXT (mode 0600; `-` for stdout, not a terminal).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The AAD given when it was sealed.
    #[arg(long, default_value = "")]
    pub aad: String,
    /// Key ID or alias, instead of the one the file names.
    #[arg(long)]
    pub key: Option<String>,
    /// The algorithm, instead of the one the file names (RSAES_OAEP_SHA_256 or
    /// RSAES_OAEP_SHA_1 for an RSA encryption key's ciphertext, e.g. one made with its
    /// public key by another tool).
    #[arg(long)]
    pub algorithm: Option<String>,
}

/// `random`
#[derive(Debug, Args)]
pub struct RandomArgs {
    /// Number of bytes (1 to 1024).
    #[arg(long, default_value = "32")]
    pub length: i32,
    /// Where to write them (mode 0600; `-` for stdout, not a terminal).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `hash`
#[derive(Debug, Args)]
pub struct HashArgs {
    /// The message (`-` for stdin).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// SHA-256, SHA-384 or SHA-512.
    #[arg(long, default_value = "SHA-256")]
    pub algorithm: String,
}

/// `sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Key ID or alias of a SIGN/VERIFY key.
    pub key: String,
    /// The message (`-` for stdin); with `--digest`, its 32-byte SHA-256 digest; with
    /// `--external-mu`, its 64-byte ML-DSA mu.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// RSA_PSS_SHA_256, RSA_PKCS1_SHA_256, ECDSA_SHA_256, ML_DSA or ED25519.
    #[arg(long)]
    pub algorithm: String,
    /// The input is the SHA-256 digest (MessageType DIGEST), not the message (RAW).
    #[arg(long, conflicts_with = "external_mu")]
    pub digest: bool,
    /// The input is ML-DSA's 64-byte mu of the message (MessageType EXTERNAL_MU, FIPS
    /// 204 section 6.2), for documents too large to send.
    #[arg(long)]
    pub external_mu: bool,
    /// Where to write the signature (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Key ID or alias of a SIGN/VERIFY key.
    pub key: String,
    /// The message (`-` for stdin); with `--digest`, its 32-byte SHA-256 digest; with
    /// `--external-mu`, its 64-byte ML-DSA mu.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// The signature file.
    #[arg(long, value_name = "FILE")]
    pub signature: PathBuf,
    /// RSA_PSS_SHA_256, RSA_PKCS1_SHA_256, ECDSA_SHA_256, ML_DSA or ED25519.
    #[arg(long)]
    pub algorithm: String,
    /// The input is the SHA-256 digest (MessageType DIGEST), not the message (RAW).
    #[arg(long, conflicts_with = "external_mu")]
    pub digest: bool,
    /// The input is ML-DSA's 64-byte mu of the message (MessageType EXTERNAL_MU, FIPS
    /// 204 section 6.2), for documents too large to send.
    #[arg(long)]
    pub external_mu: bool,
}

/// `public-key`
#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    /// Key ID or alias of a SIGN/VERIFY key.
    pub key: String,
}

/// `hmac`
#[derive(Debug, Args)]
pub struct HmacArgs {
    /// Key ID or alias of an HMAC_SHA256 key.
    pub key: String,
    /// The message (`-` for stdin).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
}

/// `backup`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup (mode 0600; written whole or not at all).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "out_dir",
        conflicts_with = "out_dir"
    )]
    pub out: Option<PathBuf>,
    /// Instead of --out: a directory to write the backup into, named by its UTC time
    /// (`kmsd-YYYYMMDDTHHMMSSZ.redb`), as a scheduled job does.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// With --out-dir: once this backup is written, keep only the newest N backups
    /// there (older `kmsd-*.redb` files of that form are removed; nothing else is).
    #[arg(long, value_name = "N", requires = "out_dir", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
}

/// `completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

impl Command {
    /// The server operation this command calls; `None` for local commands.
    pub fn operation(&self) -> Option<Operation> {
        use Operation as Op;
        Some(match self {
            Self::Key(cmd) => match cmd {
                KeyCommand::Create(_) => Op::CreateKey,
                KeyCommand::Describe(_) => Op::DescribeKey,
                KeyCommand::List(_) => Op::ListKeys,
                KeyCommand::Enable(_) => Op::EnableKey,
                KeyCommand::Disable(_) => Op::DisableKey,
                KeyCommand::ScheduleDeletion(_) => Op::ScheduleKeyDeletion,
                KeyCommand::CancelDeletion(_) => Op::CancelKeyDeletion,
                KeyCommand::Rotate(_) => Op::CreateKeyVersion,
                KeyCommand::RotationPolicy(_) => Op::UpdateRotationPolicy,
            },
            Self::Alias(cmd) => match cmd {
                AliasCommand::Create(_) => Op::CreateAlias,
                AliasCommand::Update(_) => Op::UpdateAlias,
                AliasCommand::Delete(_) => Op::DeleteAlias,
                AliasCommand::List(_) => Op::ListAliases,
            },
            Self::Version(cmd) => match cmd {
                VersionCommand::List(_) => Op::ListKeyVersions,
                VersionCommand::Describe(_) => Op::DescribeKeyVersion,
            },
            Self::Keypair(KeypairCommand::Generate(args)) => {
                match (args.advance, args.plaintext_private_out.is_some()) {
                    (false, false) => Op::GenerateDataKeyPairWithoutPlaintext,
                    (false, true) => Op::GenerateDataKeyPair,
                    (true, false) => Op::AdvanceGenerateDataKeyPairWithoutPlaintext,
                    (true, true) => Op::AdvanceGenerateDataKeyPair,
                }
            }
            Self::Datakey(DatakeyCommand::Generate(args)) => match args.advance {
                false => Op::GenerateDataKey,
                true => Op::AdvanceGenerateDataKey,
            },
            Self::Encrypt(args) => match args.advance {
                false => Op::Encrypt,
                true => Op::AdvanceEncrypt,
            },
            // Which one the file decides: the Advance form names its version.
            Self::Decrypt(_) => Op::Decrypt,
            Self::Random(_) => Op::GenerateRandom,
            Self::Hash(_) => Op::Hash,
            Self::Sign(_) => Op::Sign,
            Self::Verify(_) => Op::Verify,
            Self::PublicKey(_) => Op::GetPublicKey,
            Self::Hmac(_) => Op::Hmac,
            Self::Backup(_) => Op::Backup,
            Self::ClientKey(cmd) => match cmd {
                ClientKeyCommand::Create(_) => Op::CreateClientKey,
                ClientKeyCommand::List(_) => Op::ListClientKeys,
                ClientKeyCommand::Delete(_) => Op::DeleteClientKey,
            },
            Self::Secret(cmd) => match cmd {
                SecretCommand::Create(_) => Op::CreateSecret,
                SecretCommand::Put(_) => Op::PutSecretValue,
                SecretCommand::Get(_) => Op::GetSecretValue,
                SecretCommand::Describe(_) => Op::DescribeSecret,
                SecretCommand::List(_) => Op::ListSecrets,
                SecretCommand::Versions(_) => Op::ListSecretVersionIds,
                SecretCommand::Update(_) => Op::UpdateSecret,
                SecretCommand::Stage(_) => Op::UpdateSecretVersionStage,
                SecretCommand::RotationPolicy(_) => Op::UpdateSecretRotationPolicy,
                SecretCommand::Delete(_) => Op::DeleteSecret,
                SecretCommand::Restore(_) => Op::RestoreSecret,
            },
            Self::Completions(_) | Self::Operations => return None,
        })
    }
}

/// Every server operation and the command line that calls it (`KEY`, `FILE` and `N`
/// stand for values). `kmsctl operations` prints it; a test checks that it covers the
/// whole catalogue and that each line parses into a command calling its operation.
pub const COMMAND_TABLE: &[(Operation, &str)] = &[
    (Operation::CreateKey, "key create --description TEXT"),
    (Operation::DescribeKey, "key describe KEY"),
    (Operation::ListKeys, "key list"),
    (Operation::EnableKey, "key enable KEY"),
    (Operation::DisableKey, "key disable KEY"),
    (
        Operation::ScheduleKeyDeletion,
        "key schedule-deletion KEY --days N",
    ),
    (Operation::CancelKeyDeletion, "key cancel-deletion KEY"),
    (Operation::CreateKeyVersion, "key rotate KEY"),
    (
        Operation::UpdateRotationPolicy,
        "key rotation-policy KEY --every 30d",
    ),
    (Operation::CreateAlias, "alias create ALIAS KEY"),
    (Operation::UpdateAlias, "alias update ALIAS KEY"),
    (Operation::DeleteAlias, "alias delete ALIAS"),
    (Operation::ListAliases, "alias list --key KEY"),
    (Operation::ListKeyVersions, "version list KEY"),
    (
        Operation::DescribeKeyVersion,
        "version describe KEY VERSION",
    ),
    (
        Operation::GenerateDataKeyPairWithoutPlaintext,
        "keypair generate KEY --public-out FILE --private-out FILE",
    ),
    (
        Operation::GenerateDataKeyPair,
        "keypair generate KEY --public-out FILE --private-out FILE --plaintext-private-out FILE",
    ),
    (
        Operation::AdvanceGenerateDataKeyPairWithoutPlaintext,
        "keypair generate KEY --public-out FILE --private-out FILE --advance",
    ),
    (
        Operation::AdvanceGenerateDataKeyPair,
        "keypair generate KEY --public-out FILE --private-out FILE --plaintext-private-out FILE --advance",
    ),
    (
        Operation::Encrypt,
        "encrypt KEY --in FILE --out FILE   (an RSA key: --algorithm RSAES_OAEP_SHA_256)",
    ),
    (
        Operation::AdvanceEncrypt,
        "encrypt KEY --in FILE --out FILE --advance",
    ),
    (
        Operation::GenerateDataKey,
        "datakey generate KEY --plaintext-out FILE --out FILE",
    ),
    (
        Operation::AdvanceGenerateDataKey,
        "datakey generate KEY --plaintext-out FILE --out FILE --advance",
    ),
    (Operation::Decrypt, "decrypt --in FILE --out FILE"),
    (
        Operation::AdvanceDecrypt,
        "decrypt --in FILE --out FILE   (a file from an --advance command)",
    ),
    (Operation::GenerateRandom, "random --length N --out FILE"),
    (Operation::Hash, "hash --in FILE"),
    (
        Operation::Sign,
        "sign KEY --in FILE --algorithm ECDSA_SHA_256 --out FILE",
    ),
    (
        Operation::Verify,
        "verify KEY --in FILE --signature FILE --algorithm ECDSA_SHA_256",
    ),
    (Operation::GetPublicKey, "public-key KEY"),
    (Operation::Hmac, "hmac KEY --in FILE"),
    (Operation::Backup, "backup --out FILE"),
    (
        Operation::CreateClientKey,
        "client-key create --principal TEXT --password-file FILE --out FILE",
    ),
    (Operation::ListClientKeys, "client-key list"),
    (Operation::DeleteClientKey, "client-key delete KEY"),
    (Operation::CreateSecret, "secret create NAME --in FILE"),
    (
        Operation::PutSecretValue,
        "secret put NAME --version-id VERSION --in FILE",
    ),
    (Operation::GetSecretValue, "secret get NAME --out FILE"),
    (Operation::DescribeSecret, "secret describe NAME"),
    (Operation::ListSecrets, "secret list --prefix TEXT"),
    (
        Operation::ListSecretVersionIds,
        "secret versions NAME --all",
    ),
    (
        Operation::UpdateSecret,
        "secret update NAME --description TEXT",
    ),
    (
        Operation::UpdateSecretVersionStage,
        "secret stage NAME STAGE --from VERSION --to VERSION",
    ),
    (
        Operation::UpdateSecretRotationPolicy,
        "secret rotation-policy NAME --every 30d",
    ),
    (Operation::DeleteSecret, "secret delete NAME --days N"),
    (Operation::RestoreSecret, "secret restore NAME"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// A catalogue operation without a command fails here: when the server gains one,
    /// kmsctl gains its command.
    #[test]
    fn every_operation_has_a_command_that_calls_it() {
        for op in Operation::ALL {
            let lines: Vec<&str> = COMMAND_TABLE
                .iter()
                .filter(|(o, _)| o == op)
                .map(|(_, line)| *line)
                .collect();
            assert_eq!(lines.len(), 1, "{op}: {lines:?} in COMMAND_TABLE");
            let line = lines[0].split("   (").next().unwrap();
            let words = line.split_whitespace().map(|w| match w {
                "N" => "7",
                "TEXT" => "text",
                other => other,
            });
            let cli = Cli::try_parse_from(std::iter::once("kmsctl").chain(words))
                .unwrap_or_else(|err| panic!("{op}: kmsctl {line}: {err}"));
            let called = cli.command.operation();
            // Decrypt and AdvanceDecrypt share a command; the file decides.
            let expected = match op {
                Operation::AdvanceDecrypt => Operation::Decrypt,
                other => *other,
            };
            assert_eq!(called, Some(expected), "kmsctl {line}");
        }
        assert_eq!(COMMAND_TABLE.len(), Operation::ALL.len());
    }
}
