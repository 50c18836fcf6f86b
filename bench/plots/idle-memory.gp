set terminal pngcairo size 900,560
set output 'idle-memory.png'
set title 'Server RSS per idle connection'
set xlabel 'connections'
set ylabel 'KiB per connection'
set grid
set key top right
set yrange [0:*]
plot 'idle-memory.dat' index 0 using 1:2 with linespoints lw 2 title 'bm-relay', 'idle-memory.dat' index 1 using 1:2 with linespoints lw 2 title 'Centrifugo', 'idle-memory.dat' index 2 using 1:2 with linespoints lw 2 title 'Nchan', 'idle-memory.dat' index 3 using 1:2 with linespoints lw 2 title 'socket.io'
