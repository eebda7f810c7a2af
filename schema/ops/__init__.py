"""Operations: the watchdog's incidents."""
