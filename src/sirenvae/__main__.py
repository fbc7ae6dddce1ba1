from sirenvae.cli import app

app(prog_name="sirenvae")
