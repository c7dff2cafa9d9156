@_exported import Router
