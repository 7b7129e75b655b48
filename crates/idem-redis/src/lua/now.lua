-- now(): the store's clock, Redis TIME in milliseconds (idem::TimeTravel, tests only).
return clock()
