//! Offline administration, run with the server stopped: `kmsd rotate-root-key`,
//! `kmsd migrate-store`, `kmsd readmit-client-key`, `kmsd root-key init-pkcs11` and
//! `kmsd root-key init-kms`; and
//! `kmsd backup verify`, which needs no server at all.
//!
//! `kmsd` with any other first argument (or none) is the server, parsed by
//! [`crate::config::Config::from_args`] as always; `main.rs` hands the arguments here
//! only when the first one is [`ROTATE_ROOT_KEY`], [`MIGRATE_STORE`],
//! [`READMIT_CLIENT_KEY`] or [`ROOT_KEY`]. See `docs/destruction.md` for what rotation
//! is for, `docs/root-key.md` for the root key's custodies.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use std::sync::Arc;

use crate::clock::SystemClock;
use crate::keys::custody::kms::KmsTarget;
use crate::keys::custody::pkcs11_uri::Pkcs11Uri;
use crate::keys::custody::{self, RootKeyCustody};
use crate::keys::{self, root_key};
use crate::store::postgres::{PgStore, import};
use crate::store::{self, KeyStore, PostgresSettings, StoreSettings};

/// The subcommand that replaces the root key.
pub const ROTATE_ROOT_KEY: &str = "rotate-root-key";

/// The subcommand that copies an embedded store into PostgreSQL.
pub const MIGRATE_STORE: &str = "migrate-store";

/// The subcommand that re-admits a client key under the server's access control.
pub const READMIT_CLIENT_KEY: &str = "readmit-client-key";

/// The subcommand that checks a backup offline (`kmsd backup verify`).
pub const BACKUP: &str = "backup";

/// `kmsd backup`: work on backup files, offline.
#[derive(Debug, Parser)]
#[command(name = "kmsd backup", bin_name = "kmsd backup")]
struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BackupCommand {
    /// Check a backup offline as a restore would use it: it opens, the root key is the
    /// one it is sealed under, every key version unseals, every alias names a key.
    /// Prints what it holds; exits non-zero, naming what failed, otherwise.
    Verify {
        /// The backup file (what `kmsctl backup` wrote).
        file: PathBuf,
        /// The root key the backup is sealed under.
        #[command(flatten)]
        root_key: RootKeyArgs,
    },
}

/// The subcommands that prepare a root key in a custody (`kmsd root-key init-pkcs11`,
/// `kmsd root-key init-kms`).
pub const ROOT_KEY: &str = "root-key";

/// The root key a subcommand opens: a file holding it, or holding it wrapped by an HSM
/// key or another KMS's key.
#[derive(Debug, clap::Args)]
struct RootKeyArgs {
    /// The store's root key file (with --root-key-pkcs11 or --root-key-kms: the wrapped
    /// root key).
    #[arg(long, value_name = "FILE")]
    root_key_file: PathBuf,
    /// PKCS#11 URI of the HSM key that wraps --root-key-file (docs/root-key.md).
    #[arg(long, value_name = "URI", conflicts_with = "root_key_kms")]
    root_key_pkcs11: Option<Pkcs11Uri>,
    /// The other KMS whose key wraps --root-key-file (docs/root-key.md).
    #[arg(long, value_name = "ENDPOINT")]
    root_key_kms: Option<KmsTarget>,
}

impl RootKeyArgs {
    fn custody(&self) -> RootKeyCustody {
        RootKeyCustody::new(
            self.root_key_file.clone(),
            self.root_key_pkcs11.clone(),
            self.root_key_kms.clone(),
        )
    }
}

/// `kmsd root-key ...`.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd root-key",
    bin_name = "kmsd root-key",
    about = "Prepare a root key in a custody other than a plain file (docs/root-key.md)."
)]
struct RootKeyCommand {
    #[command(subcommand)]
    command: RootKeySubcommand,
}

#[derive(Debug, clap::Subcommand)]
enum RootKeySubcommand {
    /// Write a new random root key, wrapped by an AES-256 key in an HSM, to a new file.
    /// Start a new server with it, or move a store to it with `kmsd rotate-root-key
    /// --new-root-key-file FILE --new-root-key-pkcs11 URI`.
    InitPkcs11(InitPkcs11Args),
    /// Write a root key, wrapped by a key of another KMS instance (AdvanceEncrypt over
    /// the SDKs' HTTPS protocol), to a new file: a new random one, or the one in
    /// --from-file. Start a server with it, or move a store to it with `kmsd
    /// rotate-root-key --new-root-key-file FILE --new-root-key-kms ENDPOINT`.
    InitKms(InitKmsArgs),
}

#[derive(Debug, clap::Args)]
struct InitKmsArgs {
    /// The other KMS, its key and the files to use it with:
    /// https://HOST:PORT?key-id=ID&client-key-file=FILE&password-file=FILE&ca-file=FILE
    endpoint: KmsTarget,
    /// The file to write the wrapped root key to; it must not exist.
    #[arg(long, value_name = "FILE")]
    root_key_file: PathBuf,
    /// Wrap the root key in this plain root key file instead of a new random one (a
    /// store sealed under it then starts with --root-key-kms without a rotation).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct InitPkcs11Args {
    /// PKCS#11 URI of the HSM key: pkcs11:token=LABEL;object=LABEL?module-path=MODULE&pin-source=file:PINFILE
    uri: Pkcs11Uri,
    /// The file to write the wrapped root key to; it must not exist.
    #[arg(long, value_name = "FILE")]
    root_key_file: PathBuf,
    /// Create the HSM key first (AES-256, sensitive, non-extractable, a token object);
    /// refused if the token has a key with that label already.
    #[arg(long)]
    create_key: bool,
}

/// Where the store of a subcommand is: `--data-dir DIR` or `--store URL`.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// The data directory of the (stopped) server's embedded store.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "store",
        conflicts_with = "store"
    )]
    data_dir: Option<PathBuf>,
    /// The PostgreSQL store of the (stopped) replicas, instead of --data-dir.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

impl StoreArgs {
    /// The store named: `--store URL` or the data directory.
    fn settings(&self) -> Result<StoreSettings, String> {
        match (&self.data_dir, &self.store) {
            (_, Some(url)) => Ok(StoreSettings::Postgres(
                PostgresSettings::new(url).map_err(|err| format!("--store: {err}"))?,
            )),
            (Some(data_dir), None) => Ok(StoreSettings::Embedded {
                data_dir: data_dir.clone(),
            }),
            (None, None) => Err("name the store with --data-dir or --store".into()),
        }
    }
}

/// `kmsd readmit-client-key`: accept a client key minted without access control.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd readmit-client-key",
    bin_name = "kmsd readmit-client-key",
    about = "Re-admit a client key minted while the server ran without --auth-config (or \
             before kmsd recorded how keys were minted): such a key is refused once the \
             server has a policy, since anyone who could connect could have minted it. \
             Check who holds it first; it still acts only as its principal, and only while \
             the auth file lists that principal."
)]
struct ReadmitArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The store's root key (checked against the store).
    #[command(flatten)]
    root_key: RootKeyArgs,
    /// The client key ID (`KAAP.…`).
    client_key_id: String,
}

/// `kmsd rotate-root-key`: reseal every key version under a new root key.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd rotate-root-key",
    bin_name = "kmsd rotate-root-key",
    about = "Reseal all key material and the root key check under a new root key, in one \
             transaction (the server must be stopped). Afterwards the old root key opens \
             nothing: discard it, and destroyed keys are gone from every earlier backup."
)]
struct RotateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The root key the store is sealed under now.
    #[arg(long, value_name = "OLD")]
    root_key_file: PathBuf,
    /// PKCS#11 URI of the HSM key that wraps OLD, if an HSM holds the store's root key.
    #[arg(long, value_name = "URI", conflicts_with = "root_key_kms")]
    root_key_pkcs11: Option<Pkcs11Uri>,
    /// The other KMS whose key wraps OLD, if another KMS holds the store's root key.
    #[arg(long, value_name = "ENDPOINT")]
    root_key_kms: Option<KmsTarget>,
    /// The root key to reseal under (e.g. `(umask 077; head -c 32 /dev/urandom > new.key)`,
    /// or a wrapped one from `kmsd root-key init-pkcs11` or `init-kms`).
    #[arg(long, value_name = "NEW")]
    new_root_key_file: PathBuf,
    /// PKCS#11 URI of the HSM key that wraps NEW, moving the root key into the HSM.
    #[arg(long, value_name = "URI", conflicts_with = "new_root_key_kms")]
    new_root_key_pkcs11: Option<Pkcs11Uri>,
    /// The other KMS whose key wraps NEW, moving the root key into its custody.
    #[arg(long, value_name = "ENDPOINT")]
    new_root_key_kms: Option<KmsTarget>,
}

/// `kmsd migrate-store`: copy an embedded store into PostgreSQL.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd migrate-store",
    bin_name = "kmsd migrate-store",
    about = "Copy the keys of an embedded store (server stopped) into a PostgreSQL store, as \
             they are: material stays sealed under the same root key. Running it again copies \
             only what is missing; a database that holds other keys (or keys changed since) \
             is refused untouched."
)]
struct MigrateArgs {
    /// The data directory of the (stopped) embedded store.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The root key the store is sealed under; the replicas serving the database will
    /// need the same one.
    #[command(flatten)]
    root_key: RootKeyArgs,
    /// The PostgreSQL database to copy into (postgres://user@host:port/db).
    #[arg(long, value_name = "URL")]
    to: String,
}

/// Whether `args` (the process arguments, program name first) ask for a subcommand of
/// this module rather than the server.
pub fn is_admin_command(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|arg| {
        arg == ROTATE_ROOT_KEY
            || arg == MIGRATE_STORE
            || arg == READMIT_CLIENT_KEY
            || arg == ROOT_KEY
            || arg == BACKUP
    })
}

/// Runs the subcommand `args` names (program name first, then the subcommand);
/// prints what it did, or why it changed nothing, and returns the exit code.
pub async fn run(args: Vec<OsString>) -> ExitCode {
    let migrate = args.get(1).is_some_and(|arg| arg == MIGRATE_STORE);
    let readmit = args.get(1).is_some_and(|arg| arg == READMIT_CLIENT_KEY);
    let backup = args.get(1).is_some_and(|arg| arg == BACKUP);
    let root_key = args.get(1).is_some_and(|arg| arg == ROOT_KEY);
    let (name, outcome) = if backup {
        let args = match BackupArgs::try_parse_from(args.into_iter().skip(1)) {
            Ok(args) => args,
            Err(err) => err.exit(),
        };
        ("backup verify", backup_command(&args).await)
    } else if root_key {
        let args = match RootKeyCommand::try_parse_from(args.into_iter().skip(1)) {
            Ok(args) => args,
            Err(err) => err.exit(),
        };
        match args.command {
            RootKeySubcommand::InitPkcs11(args) => {
                ("root-key init-pkcs11", init_pkcs11(args).await)
            }
            RootKeySubcommand::InitKms(args) => ("root-key init-kms", init_kms(args).await),
        }
    } else if readmit {
        let args = match ReadmitArgs::try_parse_from(args.into_iter().skip(1)) {
            Ok(args) => args,
            Err(err) => err.exit(),
        };
        (READMIT_CLIENT_KEY, readmit_client_key(&args).await)
    } else if migrate {
        let args = match MigrateArgs::try_parse_from(args.into_iter().skip(1)) {
            Ok(args) => args,
            Err(err) => err.exit(),
        };
        (MIGRATE_STORE, migrate_store(&args).await)
    } else {
        let args = match RotateArgs::try_parse_from(args.into_iter().skip(1)) {
            Ok(args) => args,
            Err(err) => err.exit(),
        };
        (ROTATE_ROOT_KEY, rotate(&args).await)
    };
    match outcome {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kmsd {name}: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn backup_command(args: &BackupArgs) -> Result<String, String> {
    let BackupCommand::Verify { file, root_key } = &args.command;
    let root_key = root_key
        .custody()
        .load()
        .await
        .map_err(|err| err.to_string())?;
    let started = Instant::now();
    let verified = crate::backup::verify::verify(file, &root_key)
        .await
        .map_err(|err| format!("{}: {err}", file.display()))?;
    Ok(format!(
        "{}: verified in {} ms: {} keys, {} key versions (every one unseals), {} aliases, \
         {} secrets with {} versions (every one opens), {} client keys ({} more whose MAC \
         does not verify: refused until re-admitted)",
        file.display(),
        started.elapsed().as_millis(),
        verified.keys,
        verified.versions,
        verified.aliases,
        verified.secrets,
        verified.secret_versions,
        verified.client_keys,
        verified.client_keys_unverified,
    ))
}

async fn migrate_store(args: &MigrateArgs) -> Result<String, String> {
    let root_key = args
        .root_key
        .custody()
        .load()
        .await
        .map_err(|err| err.to_string())?;
    let target = PostgresSettings::new(&args.to).map_err(|err| format!("--to: {err}"))?;
    let source = StoreSettings::Embedded {
        data_dir: args.data_dir.clone(),
    };
    let fail = |err: store::StoreError| err.chain();
    // Both checks read only: a wrong key or a foreign database changes nothing.
    let check = match store::peek_meta(&source, root_key::CHECK_ENTRY)
        .await
        .map_err(fail)?
    {
        Some(check) if root_key::check_matches(&check, &root_key) => check,
        Some(_) => {
            return Err(format!(
                "{} does not open the store in {}: pass the root key it was created with",
                args.root_key.root_key_file.display(),
                args.data_dir.display()
            ));
        }
        None => return Err(format!("no store in {}", args.data_dir.display())),
    };
    let target_settings = StoreSettings::Postgres(target.clone());
    if let Some(theirs) = store::peek_meta(&target_settings, root_key::CHECK_ENTRY)
        .await
        .map_err(fail)?
        && !root_key::check_matches(&theirs, &root_key)
    {
        return Err(format!(
            "the database at {target} holds keys sealed under another root key; nothing was copied"
        ));
    }
    let started = Instant::now();
    let source_store = store::open(&source).await.map_err(fail)?;
    let target_store = PgStore::open(&target).await.map_err(fail)?;
    // The check first: a replica started meanwhile with another root key is refused.
    target_store
        .put_meta_if_absent(root_key::CHECK_ENTRY, &check)
        .await
        .map_err(fail)?;
    match target_store
        .get_meta(root_key::CHECK_ENTRY)
        .await
        .map_err(fail)?
    {
        Some(theirs) if root_key::check_matches(&theirs, &root_key) => {}
        _ => {
            return Err(format!(
                "the database at {target} was claimed by a server with another root key \
                 meanwhile; nothing was copied"
            ));
        }
    }
    let report = import::import(&*source_store, &target_store)
        .await
        .map_err(|err| err.to_string())?;
    Ok(format!(
        "copied {} keys ({} versions, {} aliases), {} client keys and {} secrets into {target}; {} keys \
         were there already, identical; in {} ms. Start the replicas with --store and \
         {}.",
        report.keys_copied,
        report.versions_copied,
        report.aliases_copied,
        report.client_keys_copied,
        report.secrets_copied,
        report.keys_present,
        started.elapsed().as_millis(),
        custody_flags(&args.root_key.custody(), ""),
    ))
}

async fn readmit_client_key(args: &ReadmitArgs) -> Result<String, String> {
    let root_key = args
        .root_key
        .custody()
        .load()
        .await
        .map_err(|err| err.to_string())?;
    let settings = args.store.settings()?;
    // Opening the registry checks the root key against the store (nothing written
    // with the wrong one) and gives the key that signs client-key rows.
    let registry = keys::open_registry(&settings, root_key, Arc::new(SystemClock))
        .await
        .map_err(|err| match err {
            keys::OpenError::WrongRootKey => format!(
                "{} does not open this store: pass its root key; nothing was changed",
                args.root_key.root_key_file.display()
            ),
            other => other.to_string(),
        })?;
    let id = &args.client_key_id;
    let was = registry
        .readmit_client_key(id)
        .await
        .map_err(|err| match err {
            crate::error::KmsError::KeyNotFound(_) => format!("no client key {id}"),
            other => other.detail(),
        })?;
    Ok(format!(
        "re-admitted client key {id} of principal {} (minted {} by {}); it acts as that \
         principal while the auth file lists it",
        was.principal,
        was.minted_under.as_str(),
        if was.minted_by.is_empty() {
            "anyone (no access control)"
        } else {
            was.minted_by.as_str()
        },
    ))
}

async fn rotate(args: &RotateArgs) -> Result<String, String> {
    let old_custody = RootKeyCustody::new(
        args.root_key_file.clone(),
        args.root_key_pkcs11.clone(),
        args.root_key_kms.clone(),
    );
    let new_custody = RootKeyCustody::new(
        args.new_root_key_file.clone(),
        args.new_root_key_pkcs11.clone(),
        args.new_root_key_kms.clone(),
    );
    let old = old_custody.load().await.map_err(|err| err.to_string())?;
    let new = new_custody.load().await.map_err(|err| err.to_string())?;
    let settings = args.store.settings()?;
    let started = Instant::now();
    let rotated = root_key::rotate(&settings, old, new)
        .await
        .map_err(|err| err.to_string())?;
    Ok(format!(
        "resealed {} key versions and the root key check under {} in one transaction, \
         signed {} client keys again under it ({} rows that did not verify under the old key \
         left refused), and compacted the store ({} -> {} bytes) in {} ms. Start the \
         server with {}; then destroy every copy of {}: with it go the \
         destroyed keys in every earlier backup.",
        rotated.versions,
        args.new_root_key_file.display(),
        rotated.client_keys,
        rotated.client_keys_unverified,
        rotated.size_before,
        rotated.size_after,
        started.elapsed().as_millis(),
        custody_flags(&new_custody, ""),
        args.root_key_file.display(),
    ))
}

async fn init_pkcs11(args: InitPkcs11Args) -> Result<String, String> {
    let started = Instant::now();
    let custody = RootKeyCustody::new(args.root_key_file.clone(), Some(args.uri.clone()), None);
    custody::init_pkcs11(
        args.uri.clone(),
        args.root_key_file.clone(),
        args.create_key,
    )
    .await
    .map_err(|err| err.to_string())?;
    Ok(format!(
        "wrote a new root key, wrapped by the HSM key {:?} ({}{}), to {} in {} ms. A new \
         server: start it with {}. An existing store: stop its server and run `kmsd \
         rotate-root-key` with its current root key and {}.",
        args.uri.object,
        args.uri.token_description(),
        if args.create_key {
            ", created now: AES-256, sensitive, non-extractable"
        } else {
            ""
        },
        args.root_key_file.display(),
        started.elapsed().as_millis(),
        custody_flags(&custody, ""),
        custody_flags(&custody, "new-"),
    ))
}

async fn init_kms(args: InitKmsArgs) -> Result<String, String> {
    let started = Instant::now();
    let custody = RootKeyCustody::new(
        args.root_key_file.clone(),
        None,
        Some(args.endpoint.clone()),
    );
    let (key_id, version) = custody::init_kms(
        args.endpoint.clone(),
        args.root_key_file.clone(),
        args.from_file.clone(),
    )
    .await
    .map_err(|err| err.to_string())?;
    let next = match &args.from_file {
        Some(from) => format!(
            "The store sealed under {} now starts with {}; then remove every copy of {}.",
            from.display(),
            custody_flags(&custody, ""),
            from.display()
        ),
        None => format!(
            "A new server: start it with {}. An existing store: stop its server and run \
             `kmsd rotate-root-key` with its current root key and {}.",
            custody_flags(&custody, ""),
            custody_flags(&custody, "new-"),
        ),
    };
    Ok(format!(
        "wrote {} root key, wrapped by the key {key_id} (version {version}) of the KMS at \
         {}:{}, to {} in {} ms. {next}",
        if args.from_file.is_some() {
            "the"
        } else {
            "a new"
        },
        args.endpoint.host,
        args.endpoint.port,
        args.root_key_file.display(),
        started.elapsed().as_millis(),
    ))
}

/// The flags that name `custody` to the server (`prefix` "") or as rotation's new key
/// (`prefix` "new-"), quoted for a shell.
fn custody_flags(custody: &RootKeyCustody, prefix: &str) -> String {
    let file = format!("--{prefix}root-key-file {}", custody.file().display());
    match custody {
        RootKeyCustody::File(_) => file,
        RootKeyCustody::Pkcs11 { uri, .. } => {
            format!("{file} --{prefix}root-key-pkcs11 '{uri}'")
        }
        RootKeyCustody::Kms { target, .. } => {
            format!("{file} --{prefix}root-key-kms '{target}'")
        }
    }
}
