@echo off
rem Starts the assistant from the environment install.bat made; arguments pass through.
setlocal
set "ROOT=%~dp0"
if not exist "%ROOT%.venv\Scripts\hybrid-llm.exe" (
    echo error: not installed yet: run install.bat first 1>&2
    exit /b 1
)
"%ROOT%.venv\Scripts\hybrid-llm.exe" %*
exit /b %ERRORLEVEL%
