//! One handler per command group: decode the arguments, call the server, return what
//! to show. Nothing here prints; [`crate::run`] does.

pub mod backup;
pub mod client_keys;
pub mod control;
pub mod data;
pub mod secrets;
pub mod signing;

use clap::CommandFactory;
use serde_json::json;

use crate::cli::{COMMAND_TABLE, Cli, Command};
use crate::connect::Connection;
use crate::failure::Failure;
use crate::output::Shown;

/// Runs `command`; local commands need no connection.
pub async fn run(cli: Cli) -> Result<Shown, Failure> {
    let command = match cli.command {
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "kmsctl", &mut std::io::stdout());
            return Ok(Shown::Nothing);
        }
        Command::Operations => return Ok(operations()),
        command => command,
    };
    let conn = Connection::open(&cli.connect).await?;
    match command {
        Command::Key(cmd) => control::key(&conn, cmd).await,
        Command::Alias(cmd) => control::alias_command(&conn, cmd).await,
        Command::Version(cmd) => control::version_command(&conn, cmd).await,
        Command::Keypair(cmd) => data::keypair(&conn, cmd).await,
        Command::Datakey(cmd) => data::datakey(&conn, cmd).await,
        Command::Encrypt(args) => data::encrypt(&conn, args).await,
        Command::Decrypt(args) => data::decrypt(&conn, args).await,
        Command::Random(args) => data::random(&conn, args).await,
        Command::Hash(args) => data::hash(&conn, args).await,
        Command::Sign(args) => signing::sign(&conn, args).await,
        Command::Verify(args) => signing::verify(&conn, args).await,
        Command::PublicKey(args) => signing::public_key(&conn, args).await,
        Command::Hmac(args) => signing::hmac(&conn, args).await,
        Command::Backup(args) => backup::backup(&conn, args).await,
        Command::ClientKey(cmd) => client_keys::client_key(&conn, cmd).await,
        Command::Secret(cmd) => secrets::secret(&conn, cmd).await,
        Command::Completions(_) | Command::Operations => unreachable!("handled above"),
    }
}

/// `kmsctl operations`: the catalogue and the command of each operation.
fn operations() -> Shown {
    let rows: Vec<Vec<String>> = COMMAND_TABLE
        .iter()
        .map(|(op, line)| vec![op.name().to_owned(), format!("kmsctl {line}")])
        .collect();
    let value = json!(
        COMMAND_TABLE
            .iter()
            .map(|(op, line)| json!({"Operation": op.name(), "Command": format!("kmsctl {line}")}))
            .collect::<Vec<_>>()
    );
    Shown::Table(vec!["OPERATION", "COMMAND"], rows, value)
}
